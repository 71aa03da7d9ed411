"""Internal history API (CONTRACTS section 4)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.api import CachedTokenAuthentication, UTCDateTimeField, scope_check
from mercari_ops.common.errors import ValidationFailed, api_exception_handler

from . import selectors, services

ERROR = inline_serializer("HistoryError", {"error": serializers.CharField(),
                                           "field": serializers.CharField(allow_null=True)})


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
    state_at = UTCDateTimeField()
    occurred_at = UTCDateTimeField()
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
    requested_at = UTCDateTimeField()


PAGE, DETAIL, REPAY = HistoryPageSerializer, HistoryPaymentSerializer, HistoryRepaymentSerializer
# Parameters as the views check them (history.selectors.history_page, RepayView): what the schema allows is taken.
PAGE_SIZE = {"type": "integer", "minimum": 1, "maximum": settings.HISTORY_PAGE_SIZE_MAX}
IDEMPOTENCY_KEY = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"\S",
                   "description": "Surrounding spaces are not part of the key"}


# --- the GET hot path -------------------------------------------------------------------------------

_PLAIN_ACCEPT = frozenset({"", "*/*", "application/*", "application/json"})


class LeanGetMixin:
    """Answers GET without DRF's request wrapping, negotiation and rendering.

    DRF's dispatch was about as much CPU as the history page itself (docs/benchmarks.md). The answer is
    what the DRF path gives: `Authorization: Token <key>` (401 with WWW-Authenticate otherwise), the same
    JSON bytes from the same renderer, errors as {"error", "field"} through the project's exception
    handler, the same Allow header. Requests that could negotiate something else (an Accept header with
    other types or parameters, ?format=) take the DRF path, as does every other method. `get` stays the
    DRF implementation, for the OpenAPI schema and for those requests.
    """

    def dispatch(self, request, *args, **kwargs):
        if request.method != "GET" or not self._plain(request):
            return super().dispatch(request, *args, **kwargs)
        try:
            authenticated = CachedTokenAuthentication().authenticate(request)
            if authenticated is None:
                raise exceptions.NotAuthenticated()
            scope_check(authenticated[1], self.required_scope)
            return self._json(self.answer(request.GET, **kwargs))
        except Exception as exc:  # the project's handler answers it, or it is re-raised
            if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
                exc.auth_header = "Token"
            handled = api_exception_handler(exc, {"view": self, "request": request})
            if handled is None:
                raise
            return self._json(handled.data, handled.status_code, handled.headers)

    def answer(self, query, **kwargs) -> dict:
        raise NotImplementedError

    @staticmethod
    def _plain(request) -> bool:
        accept = request.META.get("HTTP_ACCEPT", "")
        return "format" not in request.GET and all(part.strip() in _PLAIN_ACCEPT for part in accept.split(","))

    def _json(self, body, status_code: int = 200, headers=None) -> HttpResponse:
        response = HttpResponse(JSONRenderer().render(body), content_type="application/json", status=status_code)
        response["Allow"] = ", ".join(self.allowed_methods)
        for name, value in (headers or {}).items():
            if name.lower() != "content-type":
                response[name] = value
        return response


def _page_size(query) -> int | None:
    raw_size = query.get("page_size")
    try:
        return int(raw_size) if raw_size not in (None, "") else None
    except ValueError:
        raise ValidationFailed("page_size must be an integer", "page_size") from None


class CustomerPaymentsView(LeanGetMixin, APIView):
    """The customer's history, newest first: each entry with its children, state, actions and cashback estimate."""

    required_scope = "history_read"

    def answer(self, query, customer_id: str) -> dict:
        return selectors.history_page(customer_id=customer_id, cursor=query.get("cursor") or None,
                                      page_size=_page_size(query))

    @extend_schema(
        summary="A customer's payment history, newest first (cursor paginated)",
        parameters=[OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
                    OpenApiParameter("page_size", PAGE_SIZE, description=f"default {settings.HISTORY_PAGE_SIZE}")],
        responses={200: PAGE, 400: ERROR, 404: ERROR},
    )
    def get(self, request, customer_id: str):
        return Response(self.answer(request.query_params, customer_id))


class PaymentView(LeanGetMixin, APIView):
    """One payment with its children, its parent's ID and every state transition."""

    required_scope = "history_read"

    def answer(self, query, payment_id: str) -> dict:
        return selectors.payment_get(payment_id=payment_id)

    @extend_schema(summary="One payment with its children and state transitions",
                   responses={200: DETAIL, 404: ERROR})
    def get(self, request, payment_id: str):
        return Response(self.answer(request.query_params, payment_id))


class RepayView(APIView):
    required_scope = "repay"

    @extend_schema(
        summary="Repay a billed card transaction now (idempotent)",
        parameters=[OpenApiParameter("Idempotency-Key", IDEMPOTENCY_KEY, OpenApiParameter.HEADER, required=True,
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
