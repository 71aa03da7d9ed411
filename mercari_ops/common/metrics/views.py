"""`GET /metrics`: the Prometheus text format, for a scraper holding METRICS_TOKEN."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from mercari_ops.common.errors import error_body

from .registry import exposition


def _token_matches(request) -> bool:
    # Prometheus sends `authorization: { credentials: ... }` (or bearer_token_file) as "Bearer <token>".
    header = request.META.get("HTTP_AUTHORIZATION", "")
    expected = settings.METRICS_TOKEN
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), expected.encode())


@require_GET
def metrics(request):
    if not _token_matches(request):
        response = JsonResponse(error_body("missing or wrong bearer token", "Authorization"), status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # Text format 0.0.4: what generate_latest writes for our names, and what Prometheus 2.x (Debian's) reads.
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_PLAIN_0_0_4)
