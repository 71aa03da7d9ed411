"""Internal history API (CONTRACTS section 4)."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.errors import ValidationFailed

from . import selectors, services

ERROR = inline_serializer("HistoryError", {"error": serializers.CharField(), "field": serializers.CharField()})


class HistoryActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["repay"])
    amount = serializers.IntegerField()
    method = serializers.CharField()
    href = serializers.CharField()


class HistoryCashbackSerializer(serializers.Serializer):
    eligible = serializers.BooleanField()
    points = serializers.IntegerField()
    rate = serializers.CharField(allow_null=True)
    campaign_id = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField(allow_null=True)


class HistoryEntrySerializer(serializers.Serializer):
    payment_id = serializers.CharField()
    type = serializers.CharField()
    parent_id = serializers.CharField(allow_null=True)
    amount = serializers.IntegerField(help_text="Yen.")
    state = serializers.ChoiceField(choices=["completed", "authorized", "billed", "repayment_requested", "repaid",
                                             "refunded"])
    state_at = serializers.DateTimeField()
    occurred_at = serializers.DateTimeField()
    title = serializers.CharField()
    attributes = serializers.DictField()
    actions = HistoryActionSerializer(many=True)
    cashback = HistoryCashbackSerializer(allow_null=True, help_text="From campaigns; null when not applicable.")
    children = serializers.ListField(child=serializers.DictField(), help_text="Entries of this same shape.")


class HistoryPageSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    entries = HistoryEntrySerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True, help_text="Pass as ?cursor= for the next page.")


class HistoryPaymentSerializer(HistoryEntrySerializer):
    customer_id = serializers.CharField()
    transitions = serializers.ListField(child=serializers.DictField())


class HistoryRepaymentSerializer(serializers.Serializer):
    repayment_id = serializers.UUIDField()
    payment_id = serializers.CharField()
    amount = serializers.IntegerField()
    state = serializers.CharField()
    requested_at = serializers.DateTimeField()


PAGE, DETAIL, REPAY = HistoryPageSerializer, HistoryPaymentSerializer, HistoryRepaymentSerializer


class CustomerPaymentsView(APIView):
    @extend_schema(
        summary="A customer's payment history, newest first (cursor paginated)",
        parameters=[OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
                    OpenApiParameter("page_size", int, description="1..100, default 20")],
        responses={200: PAGE, 400: ERROR, 404: ERROR},
    )
    def get(self, request, customer_id: str):
        raw_size = request.query_params.get("page_size")
        try:
            page_size = int(raw_size) if raw_size not in (None, "") else None
        except ValueError:
            raise ValidationFailed("page_size must be an integer", "page_size")
        page = selectors.history_page(customer_id=customer_id, cursor=request.query_params.get("cursor") or None,
                                      page_size=page_size)
        return Response(page)


class PaymentView(APIView):
    @extend_schema(summary="One payment with its children and state transitions",
                   responses={200: DETAIL, 404: ERROR})
    def get(self, request, payment_id: str):
        return Response(selectors.payment_get(payment_id=payment_id))


class RepayView(APIView):
    @extend_schema(
        summary="Repay a billed card transaction now (idempotent)",
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=True,
                                     description="Same key: same answer, one request to the repayment service")],
        request=None,
        responses={202: REPAY, 400: ERROR, 404: ERROR, 409: ERROR, 422: ERROR},
    )
    def post(self, request, payment_id: str):
        key = request.headers.get("Idempotency-Key", "").strip()
        if not key:
            raise ValidationFailed("the Idempotency-Key header is required", "Idempotency-Key")
        if len(key) > 128:
            raise ValidationFailed("Idempotency-Key is longer than 128 characters", "Idempotency-Key")
        repayment = services.repayment_request(payment_id=payment_id, idempotency_key=key,
                                               requested_by=getattr(request.user, "username", "") or "")
        return Response(repayment.response, status=status.HTTP_202_ACCEPTED)
