"""DRF views: the points estimate (hot path) and campaign creation for tools other than the admin."""

from __future__ import annotations

import json
from datetime import datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.api import CachedTokenAuthentication
from mercari_ops.common.errors import DomainError, NotFound, ValidationFailed, error_body
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.common.schema import Int, List, Schema, Str

from .models import Campaign
from .selectors import estimate_items
from .services import campaign_create, campaign_snapshot

ITEM_FIELDS = {
    "amount": Int(min_value=-(10**12), max_value=10**12),
    "channel": Str(max_length=16, choices=("mercari", "outside")),
    "merchant_id": Str(max_length=64, required=False, nullable=True),
    "payment_method": Str(max_length=32, required=False, nullable=True),
}
SINGLE_SCHEMA = Schema({"customer_id": Str(max_length=64), **ITEM_FIELDS})
LIST_SCHEMA = Schema({"customer_id": Str(max_length=64), "items": List(Schema(ITEM_FIELDS), min_items=1)})

_estimate = inline_serializer("Estimate", {
    "eligible": serializers.BooleanField(), "points": serializers.IntegerField(),
    "rate": serializers.CharField(allow_null=True, help_text="Percent with one decimal, e.g. \"1.5\""),
    "campaign_id": serializers.IntegerField(allow_null=True),
    "reason": serializers.CharField(allow_null=True, help_text="Why not eligible (unknown_customer, ...)"),
})
_item = {
    "amount": serializers.IntegerField(help_text="Yen"),
    "channel": serializers.ChoiceField(choices=["mercari", "outside"]),
    "merchant_id": serializers.CharField(required=False, allow_null=True),
    "payment_method": serializers.CharField(required=False, allow_null=True, help_text="default mercard"),
}
_error = inline_serializer("CampaignError", {"error": serializers.CharField(),
                                             "field": serializers.CharField(allow_null=True)})


def _json(body: dict, status_code: int = 200, **headers) -> HttpResponse:
    response = HttpResponse(json.dumps(body), content_type="application/json", status=status_code)
    for name, value in headers.items():
        response[name] = value
    return response


class EstimateView(APIView):
    """The item page's hot path.

    `dispatch` answers POST without DRF's request wrapping, negotiation and rendering (measured at
    roughly half the cost of the whole request); the contract is the same as any other API view here:
    `Authorization: Token <key>` (401 otherwise), errors as {"error", "field"}, 503 when the database
    is unreachable. `post` is the same logic through DRF, kept for the OpenAPI schema and for tests.
    """

    authentication_classes = [CachedTokenAuthentication]

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        if len(parts) != 2 or parts[0] != "Token":
            return _json(error_body("Authentication credentials were not provided."), 401,
                         **{"WWW-Authenticate": "Token"})
        # CONN_HEALTH_CHECKS would spend a "SELECT 1" round trip on every request before our one query;
        # here a dead connection just fails that query (503) and Django drops it at the end of the request.
        connection.health_check_done = True
        try:
            CachedTokenAuthentication().authenticate_credentials(parts[1])
            try:
                data = json_loads_strict(request.body)
            except (ValueError, UnicodeDecodeError):
                raise ValidationFailed("body is not valid JSON", "body") from None
            return _json(self.estimate(data))
        except AuthenticationFailed as exc:
            return _json(error_body(str(exc.detail)), 401, **{"WWW-Authenticate": "Token"})
        except DomainError as exc:
            return _json(error_body(exc.message, exc.field), exc.status_code)
        except DatabaseError:
            return _json(error_body("database unavailable, retry later"), 503)

    @staticmethod
    def estimate(data) -> dict:
        if not isinstance(data, dict):
            raise ValidationFailed("body must be a JSON object", None)
        if "items" in data:
            body = LIST_SCHEMA.clean(data)
            if len(body["items"]) > settings.CAMPAIGNS_ESTIMATE_MAX_ITEMS:
                raise ValidationFailed(f"items has more than {settings.CAMPAIGNS_ESTIMATE_MAX_ITEMS} entries",
                                       "items")
            return {"customer_id": body["customer_id"],
                    "items": estimate_items(customer_id=body["customer_id"], items=body["items"])}
        body = SINGLE_SCHEMA.clean(data)
        return estimate_items(customer_id=body["customer_id"], items=[body])[0]

    @extend_schema(
        operation_id="campaigns_estimate",
        summary="Points a payment would earn (no cap applied)",
        request=inline_serializer("EstimateRequest", {
            "customer_id": serializers.CharField(max_length=64), **_item,
            "items": inline_serializer("EstimateItem", _item, many=True, required=False),
        }),
        responses={200: _estimate, 400: _error},
        examples=[
            OpenApiExample("single", value={"customer_id": "c-00001", "amount": 3000, "channel": "mercari",
                                            "merchant_id": "m-mercari", "payment_method": "mercard"},
                           request_only=True),
            OpenApiExample("list", value={"customer_id": "c-00001", "items": [
                {"amount": 3000, "channel": "mercari"}, {"amount": 1200, "channel": "outside",
                                                         "merchant_id": "m-77"}]}, request_only=True),
            OpenApiExample("eligible", value={"eligible": True, "points": 45, "rate": "1.5", "campaign_id": 1,
                                              "reason": None}, response_only=True),
            OpenApiExample("list answer", value={"customer_id": "c-00001", "items": [
                {"eligible": False, "points": 0, "rate": None, "campaign_id": None,
                 "reason": "unknown_customer"}]}, response_only=True),
        ],
    )
    def post(self, request):
        return Response(self.estimate(request.data))


def _datetime(value, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be an RFC 3339 time", field)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed(f"{field} is not an RFC 3339 time: {value!r}", field) from None
    if parsed.tzinfo is None:
        raise ValidationFailed(f"{field} must carry a UTC offset", field)
    return parsed


class StageRateSerializer(serializers.Serializer):
    stage_from = serializers.IntegerField()
    stage_to = serializers.IntegerField()
    rate = serializers.CharField(help_text="percent, one decimal")


def _rates(**kwargs):
    return StageRateSerializer(many=True, **kwargs)


_campaign = inline_serializer("Campaign", {
    "id": serializers.IntegerField(), "name": serializers.CharField(), "status": serializers.CharField(),
    "version": serializers.IntegerField(), "starts_at": serializers.DateTimeField(),
    "ends_at": serializers.DateTimeField(), "user_filters": serializers.JSONField(),
    "payment_filters": serializers.JSONField(), "upper_limit": serializers.IntegerField(allow_null=True),
    "rates": _rates(),
})


def _campaign_body(campaign: Campaign) -> dict:
    return {"id": campaign.pk, "version": campaign.version, **campaign_snapshot(campaign)}


class CampaignCreateView(APIView):
    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a draft campaign (validated like the admin: filters schema, stage ranges, period)",
        request=inline_serializer("CampaignCreate", {
            "name": serializers.CharField(), "starts_at": serializers.DateTimeField(),
            "ends_at": serializers.DateTimeField(), "user_filters": serializers.JSONField(required=False),
            "payment_filters": serializers.JSONField(required=False),
            "upper_limit": serializers.IntegerField(required=False, allow_null=True),
            "rates": _rates(),
        }),
        responses={201: _campaign, 400: _error},
    )
    def post(self, request):
        data = request.data if isinstance(request.data, dict) else {}
        rates = data.get("rates")
        if not isinstance(rates, list) or not all(isinstance(r, dict) for r in rates):
            raise ValidationFailed("rates must be a list of {stage_from, stage_to, rate}", "rates")
        for index, rate in enumerate(rates):
            for key in ("stage_from", "stage_to"):
                if isinstance(rate.get(key), bool) or not isinstance(rate.get(key), int):
                    raise ValidationFailed(f"rates.{index}.{key} must be an integer", f"rates.{index}.{key}")
            if "rate" not in rate:
                raise ValidationFailed(f"rates.{index}.rate is required", f"rates.{index}.rate")
        campaign = campaign_create(
            name=data.get("name") or "", starts_at=_datetime(data.get("starts_at"), "starts_at"),
            ends_at=_datetime(data.get("ends_at"), "ends_at"), user_filters=data.get("user_filters") or {},
            payment_filters=data.get("payment_filters") or {}, upper_limit=data.get("upper_limit"),
            rates=[(r["stage_from"], r["stage_to"], r["rate"]) for r in rates],
            by=getattr(request.user, "username", ""),
        )
        return Response(_campaign_body(campaign), status=status.HTTP_201_CREATED)


class CampaignDetailView(APIView):
    @extend_schema(operation_id="campaigns_get", summary="One campaign with its rates",
                   responses={200: _campaign, 404: _error})
    def get(self, request, campaign_id: int):
        campaign = Campaign.objects.filter(pk=campaign_id).first()
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} does not exist", "campaign_id")
        return Response(_campaign_body(campaign))
