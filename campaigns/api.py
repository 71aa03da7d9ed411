"""DRF views: the points estimate (hot path) and campaign creation for tools other than the admin."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.api import CachedTokenAuthentication, UTCDateTimeField, token_authenticate
from mercari_ops.common.errors import DomainError, NotFound, ValidationFailed, error_body
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.common.schema import Int, List, Schema, Str

from .metrics import ESTIMATE_DURATION
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

# The OpenAPI schema of the estimate, written out as JSON Schema: the request is one of two forms that the
# view tells apart by the presence of "items", and the constraints are those of SINGLE_SCHEMA/LIST_SCHEMA.
_ESTIMATE = {
    "type": "object",
    "properties": {
        "eligible": {"type": "boolean"}, "points": {"type": "integer"},
        "rate": {"type": "string", "nullable": True, "description": "Percent with one decimal, e.g. \"1.5\""},
        "campaign_id": {"type": "integer", "nullable": True},
        "reason": {"type": "string", "nullable": True, "description": "Why not eligible (unknown_customer, ...)"},
    },
    "required": ["eligible", "points", "rate", "campaign_id", "reason"],
}
_CUSTOMER_ID = {"type": "string", "minLength": 1, "maxLength": 64}
_ITEM_PROPERTIES = {
    "amount": {"type": "integer", "minimum": -(10**12), "maximum": 10**12,
               "description": "Yen (negative: a refund)"},
    "channel": {"type": "string", "enum": ["mercari", "outside"]},
    "merchant_id": {"type": "string", "minLength": 1, "maxLength": 64, "nullable": True},
    "payment_method": {"type": "string", "minLength": 1, "maxLength": 32, "nullable": True,
                       "description": "default mercard"},
}
_ESTIMATE_REQUEST = {"oneOf": [
    {"title": "One payment", "type": "object",
     "properties": {"customer_id": _CUSTOMER_ID, **_ITEM_PROPERTIES},
     "required": ["customer_id", "amount", "channel"],
     "not": {"required": ["items"]}},
    {"title": "A list page", "type": "object",
     "properties": {"customer_id": _CUSTOMER_ID, "items": {
         "type": "array", "minItems": 1, "maxItems": settings.CAMPAIGNS_ESTIMATE_MAX_ITEMS,
         "items": {"type": "object", "properties": _ITEM_PROPERTIES, "required": ["amount", "channel"]}}},
     "required": ["customer_id", "items"]},
]}
_ESTIMATE_ANSWER = {"oneOf": [
    _ESTIMATE,
    {"type": "object", "properties": {"customer_id": {"type": "string"}, "items": {"type": "array",
                                                                                   "items": _ESTIMATE}},
     "required": ["customer_id", "items"]},
]}
_error = inline_serializer("CampaignError", {"error": serializers.CharField(),
                                             "field": serializers.CharField(allow_null=True)})
# What PostgreSQL's columns hold (campaigns.models): a bigger value is a 400 naming the field, not a 500.
INTEGER_MAX = 2**31 - 1
SMALLINT_MAX = 2**15 - 1
NAME_MAX_LENGTH = Campaign._meta.get_field("name").max_length


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
    required_scope = "estimate"

    def dispatch(self, request, *args, **kwargs):
        if request.method != "POST":
            return super().dispatch(request, *args, **kwargs)
        started = time.perf_counter()
        try:
            return self._answer(request)
        finally:
            ESTIMATE_DURATION.observe(time.perf_counter() - started)

    def _answer(self, request) -> HttpResponse:
        parts = request.META.get("HTTP_AUTHORIZATION", "").split()
        if len(parts) != 2 or parts[0] != "Token":
            return _json(error_body("Authentication credentials were not provided."), 401,
                         **{"WWW-Authenticate": "Token"})
        # CONN_HEALTH_CHECKS would spend a "SELECT 1" round trip on every request before our one query;
        # here a dead connection just fails that query (503) and Django drops it at the end of the request.
        connection.health_check_done = True
        try:
            token_authenticate(parts[1], scope=self.required_scope)
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
        request={"application/json": _ESTIMATE_REQUEST},
        responses={200: _ESTIMATE_ANSWER, 400: _error, 401: _error},
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


# RFC 3339 as the schema's "date-time" means it (Python's fromisoformat alone takes more: "+0000", a space).
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
                      r"([Zz]|[+-][0-9]{2}:[0-9]{2})")
_RATE = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _datetime(value, field: str) -> datetime:
    if not isinstance(value, str):
        raise ValidationFailed(f"{field} must be an RFC 3339 time", field)
    if not _RFC3339.fullmatch(value):
        raise ValidationFailed(f"{field} is not an RFC 3339 time: {value!r}", field)
    try:
        parsed = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        # the instant must exist in UTC, where it is stored ("0001-01-01T00:00:00+14:00" does not)
        parsed.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(f"{field} is not an RFC 3339 time PostgreSQL can store: {value!r}", field) from None
    return parsed


def _integer(value, field: str, *, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(f"{field} must be an integer", field)
    if not low <= value <= high:
        raise ValidationFailed(f"{field} must be between {low} and {high}", field)
    return value


def _upper_limit(value):
    """Its type and sign are campaign rules (rules.upper_limit_validate); its size is the column's."""
    if isinstance(value, int) and not isinstance(value, bool) and value > INTEGER_MAX:
        raise ValidationFailed(f"upper_limit must be at most {INTEGER_MAX}", "upper_limit")
    return value


def _filters(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationFailed(f"{field} must be a JSON object", field)
    return value


class StageRateSerializer(serializers.Serializer):
    stage_from = serializers.IntegerField()
    stage_to = serializers.IntegerField()
    rate = serializers.CharField(help_text="percent, one decimal")


def _rates(**kwargs):
    return StageRateSerializer(many=True, **kwargs)


_campaign = inline_serializer("Campaign", {
    "id": serializers.IntegerField(), "name": serializers.CharField(), "status": serializers.CharField(),
    "version": serializers.IntegerField(), "starts_at": UTCDateTimeField(),
    "ends_at": UTCDateTimeField(), "user_filters": serializers.JSONField(),
    "payment_filters": serializers.JSONField(), "upper_limit": serializers.IntegerField(allow_null=True),
    "rates": _rates(),
})

_STAGE = {"type": "integer", "minimum": 0, "maximum": SMALLINT_MAX}
_CAMPAIGN_CREATE = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": NAME_MAX_LENGTH, "pattern": r"\S"},
        "starts_at": {"type": "string", "format": "date-time"},
        "ends_at": {"type": "string", "format": "date-time", "description": "After starts_at"},
        "user_filters": {"type": "object", "nullable": True,
                         "description": "Keys as in the admin: mercard_status, stage, ..."},
        "payment_filters": {"type": "object", "nullable": True,
                            "description": "Keys as in the admin: mercari_inner_payment, merchant, ..."},
        "upper_limit": {"type": "integer", "minimum": 0, "maximum": INTEGER_MAX, "nullable": True,
                        "description": "Points per customer; null: no cap"},
        "rates": {"type": "array", "minItems": 1, "items": {
            "type": "object",
            "properties": {"stage_from": _STAGE, "stage_to": _STAGE,
                           "rate": {"type": "string", "pattern": f"^{_RATE.pattern}$",
                                    "description": "Percent, 0 to 100 with at most one decimal, e.g. \"1.5\""}},
            "required": ["stage_from", "stage_to", "rate"],
            "description": "Stage ranges must not overlap",
        }},
    },
    "required": ["name", "starts_at", "ends_at", "rates"],
}


def _campaign_body(campaign: Campaign) -> dict:
    return {"id": campaign.pk, "version": campaign.version, **campaign_snapshot(campaign)}


class CampaignCreateView(APIView):
    required_scope = "campaigns_write"

    @extend_schema(
        operation_id="campaigns_create",
        summary="Create a draft campaign (validated like the admin: filters schema, stage ranges, period)",
        request={"application/json": _CAMPAIGN_CREATE},
        responses={201: _campaign, 400: _error, 401: _error},
    )
    def post(self, request):
        data = request.data
        if not isinstance(data, dict):
            raise ValidationFailed("body must be a JSON object", None)
        name = data.get("name")
        if not isinstance(name, str):
            raise ValidationFailed("name must be a string", "name")
        if len(name) > NAME_MAX_LENGTH:
            raise ValidationFailed(f"name is longer than {NAME_MAX_LENGTH} characters", "name")
        rates = data.get("rates")
        if not isinstance(rates, list) or not all(isinstance(r, dict) for r in rates):
            raise ValidationFailed("rates must be a list of {stage_from, stage_to, rate}", "rates")
        for index, rate in enumerate(rates):
            for key in ("stage_from", "stage_to"):
                _integer(rate.get(key), f"rates.{index}.{key}", low=0, high=SMALLINT_MAX)
            if "rate" not in rate:
                raise ValidationFailed(f"rates.{index}.rate is required", f"rates.{index}.rate")
            if not isinstance(rate["rate"], str) or not _RATE.fullmatch(rate["rate"]):
                raise ValidationFailed(f"rates.{index}.rate must be a percent as a string, e.g. \"1.5\"",
                                       f"rates.{index}.rate")
        campaign = campaign_create(
            name=name, starts_at=_datetime(data.get("starts_at"), "starts_at"),
            ends_at=_datetime(data.get("ends_at"), "ends_at"),
            user_filters=_filters(data.get("user_filters"), "user_filters"),
            payment_filters=_filters(data.get("payment_filters"), "payment_filters"),
            upper_limit=_upper_limit(data.get("upper_limit")),
            rates=[(r["stage_from"], r["stage_to"], r["rate"]) for r in rates],
            by=getattr(request.user, "username", ""),
        )
        return Response(_campaign_body(campaign), status=status.HTTP_201_CREATED)


class CampaignDetailView(APIView):
    required_scope = "campaigns_write"

    @extend_schema(operation_id="campaigns_get", summary="One campaign with its rates",
                   parameters=[OpenApiParameter("campaign_id", {"type": "integer", "minimum": 1,
                                                                "maximum": INTEGER_MAX}, OpenApiParameter.PATH)],
                   responses={200: _campaign, 401: _error, 404: _error})
    def get(self, request, campaign_id: int):
        campaign = Campaign.objects.filter(pk=campaign_id).first() if campaign_id <= INTEGER_MAX else None
        if campaign is None:
            raise NotFound(f"campaign {campaign_id} does not exist", "campaign_id")
        return Response(_campaign_body(campaign))
