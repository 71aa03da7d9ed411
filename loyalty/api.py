"""GET /api/loyalty/customers/<customer_id> (CONTRACTS section 4)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.api import UTCDateTimeField
from mercari_ops.common.errors import NotFound

from .selectors import customer_profile_get

ERROR = inline_serializer("LoyaltyError", {"error": serializers.CharField(),
                                           "field": serializers.CharField(allow_null=True)})


class AmountCountSerializer(serializers.Serializer):
    amount = serializers.IntegerField(help_text="Yen over the window (reversals subtracted).")
    count = serializers.IntegerField(help_text="Activities over the window (a reversal counts -1).")


class StageChangeSerializer(serializers.Serializer):
    to = serializers.IntegerField()
    cause = serializers.CharField()
    reason = serializers.JSONField(help_text="Window totals and the thresholds crossed (or the pin).")
    rule_version = serializers.IntegerField(allow_null=True)
    at = UTCDateTimeField()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.IntegerField()  # "from" is a Python keyword
        return fields


class CustomerProfileSerializer(serializers.Serializer):
    customer_id = serializers.CharField()
    stage = serializers.IntegerField(help_text="Effective stage (rules stage raised to an active operator pin).")
    stage_name = serializers.CharField()
    rules_stage = serializers.IntegerField(help_text="Stage earned from the totals alone.")
    pin = inline_serializer("LoyaltyPin", {
        "floor": serializers.IntegerField(), "expires_at": UTCDateTimeField(),
        "reason": serializers.CharField(),
    }, allow_null=True)
    rules_version = serializers.IntegerField()
    window = inline_serializer("LoyaltyWindow", {
        "months": serializers.IntegerField(), "from": serializers.CharField(), "to": serializers.CharField(),
    })
    totals = inline_serializer("LoyaltyTotals", {
        "buy": AmountCountSerializer(), "sell": AmountCountSerializer(), "pay": AmountCountSerializer(),
    })
    next_stage = inline_serializer("LoyaltyNextStage", {
        "stage": serializers.IntegerField(), "name": serializers.CharField(), "combine": serializers.CharField(),
        "thresholds": serializers.DictField(child=serializers.IntegerField()),
        "missing": serializers.DictField(child=serializers.IntegerField(),
                                         help_text="Per metric, what is still missing (any: one is enough)."),
    }, allow_null=True)
    recent_changes = StageChangeSerializer(many=True)


class CustomerDetailApi(APIView):
    required_scope = "history_read"  # a customer's stage and totals: read like their history

    @extend_schema(
        operation_id="loyalty_customer_get",
        summary="A customer's stage, the window totals it came from, the next stage and recent changes",
        responses={200: CustomerProfileSerializer,
                   404: OpenApiResponse(ERROR, description='Unknown customer: {"error": ..., "field": "customer_id"}')},
    )
    def get(self, request, customer_id: str):
        profile = customer_profile_get(customer_id=customer_id)
        if profile is None:
            raise NotFound(f"unknown customer {customer_id!r}", "customer_id")
        return Response(CustomerProfileSerializer(profile).data)
