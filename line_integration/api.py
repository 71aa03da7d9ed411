"""HTTP entry points: Braze and LINE webhooks (plain views, hot path) and the marketplace's link APIs (DRF)."""

from django.conf import settings
from django.db import DataError, IntegrityError
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from mercari_ops.common.errors import ValidationFailed, error_body
from mercari_ops.inbox.views import bearer_matches

from . import services
from .metrics import BRAZE_WEBHOOKS
from .services.braze import braze_accept, braze_accept_grouped
from .services.linking import BadSignature


@csrf_exempt
@require_POST
def braze_webhook(request):
    """POST /line/braze/webhook: one insert (shared with concurrent requests), then 202 (queued, or skipped)."""
    if not bearer_matches(request, settings.BRAZE_WEBHOOK_TOKEN):
        return JsonResponse(error_body("missing or wrong bearer token", "Authorization"), status=401)
    try:
        if settings.GROUP_COMMIT:
            result = braze_accept_grouped(body=request.body)
        else:
            result = braze_accept(body=request.body)
    except ValidationFailed as exc:
        BRAZE_WEBHOOKS.labels("refused").inc()
        return JsonResponse(error_body(exc.message, exc.field), status=400)
    except (DataError, IntegrityError):  # this message's own data (validation keeps it out: a last line)
        BRAZE_WEBHOOKS.labels("refused").inc()
        return JsonResponse(error_body("the message cannot be stored as sent", "body"), status=400)
    BRAZE_WEBHOOKS.labels(result["status"]).inc()
    return JsonResponse(result, status=202)


@csrf_exempt
@require_POST
def line_webhook(request):
    """POST /line/webhook: x-line-signature verified on the raw body before anything is parsed."""
    try:
        services.webhook_receive(body=request.body, signature=request.headers.get("x-line-signature"))
    except BadSignature as exc:
        return JsonResponse(error_body(str(exc), "x-line-signature"), status=400)
    except ValidationFailed as exc:
        return JsonResponse(error_body(exc.message, exc.field), status=400)
    return HttpResponse(status=200)


ERROR = inline_serializer("LineError", {"error": serializers.CharField(),
                                       "field": serializers.CharField(allow_null=True)})


class LinkNonceSerializer(serializers.Serializer):
    # min_length: the schema says what DRF refuses (a blank string); IDs are opaque, spaces included.
    customer_id = serializers.CharField(min_length=1, max_length=64, trim_whitespace=False)
    link_token = serializers.CharField(min_length=1, max_length=255, trim_whitespace=False)


class LinkNonceView(APIView):
    required_scope = "line_linking"

    @extend_schema(
        request=LinkNonceSerializer,
        responses={200: inline_serializer("LinkNonceResponse", {"redirect_url": serializers.URLField()}),
                   400: OpenApiResponse(ERROR, description="Bad body, or a link_token that is unknown or expired"),
                   409: OpenApiResponse(ERROR, description="link_token was already used")},
        summary="Start account linking: a single-use nonce for the link token; redirect the user to redirect_url",
    )
    def post(self, request):
        data = LinkNonceSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        url = services.link_nonce_create(**data.validated_data)
        return Response({"redirect_url": url})


class UnlinkSerializer(serializers.Serializer):
    customer_id = serializers.CharField(min_length=1, max_length=64, trim_whitespace=False)


class UnlinkView(APIView):
    required_scope = "line_linking"

    @extend_schema(request=UnlinkSerializer,
                   responses={200: inline_serializer("UnlinkResponse", {"status": serializers.CharField()}),
                              400: ERROR, 404: OpenApiResponse(ERROR, description="No linked LINE account")},
                   summary="Unlink the customer's LINE account (no more messages; rich menu switched back)")
    def post(self, request):
        data = UnlinkSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.line_unlink(customer_id=data.validated_data["customer_id"])
        return Response({"status": "unlinked"}, status=status.HTTP_200_OK)
