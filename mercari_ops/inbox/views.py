"""`POST /pubsub/push/<topic>`: a plain Django view, kept thin for the ingestion hot path."""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from mercari_ops.common.errors import ValidationFailed, error_body

from .services import inbox_receive


def bearer_matches(request, expected: str | None) -> bool:
    # META, not request.headers: the latter builds a dict of every header, on the ingestion hot path.
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), expected.encode())


@csrf_exempt
@require_POST
def pubsub_push(request, topic: str):
    if not bearer_matches(request, settings.PUBSUB_PUSH_TOKEN):
        return JsonResponse(error_body("missing or wrong bearer token", "Authorization"), status=401)
    try:
        inbox_receive(topic_name=topic, body=request.body, group_commit=settings.GROUP_COMMIT)
    except ValidationFailed as exc:
        return JsonResponse(error_body(exc.message, exc.field), status=400)
    return HttpResponse(status=204)
