"""`POST /pubsub/push/<topic>`: a plain Django view, kept thin for the ingestion hot path."""

import hmac
import logging
import time

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from mercari_ops.common.errors import ValidationFailed, error_body

from .auth import CertificatesUnavailable, PushAuthRefused, oidc_verifier
from .metrics import PUSH_DURATION, topic_label
from .services import inbox_receive, inbox_refuse_oversized

_CHUNK_BYTES = 1024 * 1024
logger = logging.getLogger("mercari_ops.inbox.push")


def bearer_matches(request, expected: str | None) -> bool:
    # META, not request.headers: the latter builds a dict of every header, on the ingestion hot path.
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[7:].encode(), expected.encode())


def oidc_refusal(request) -> JsonResponse | None:
    """None when the push carries a valid Google ID token (PUBSUB_AUTH=oidc), else the answer: 401 or 503."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if not header.startswith("Bearer "):
        return JsonResponse(error_body("missing bearer token (a Google OIDC ID token)", "Authorization"), status=401)
    try:
        oidc_verifier().verify(header[7:])
    except PushAuthRefused as exc:
        return JsonResponse(error_body(f"OIDC token refused: {exc.reason}", "Authorization"), status=401)
    except CertificatesUnavailable as exc:
        return JsonResponse(error_body(str(exc), "Authorization"), status=503)
    return None


@csrf_exempt
@require_POST
def pubsub_push(request, topic: str):
    started = time.perf_counter()
    try:
        return _pubsub_push(request, topic)
    finally:
        PUSH_DURATION.labels(topic_label(topic)).observe(time.perf_counter() - started)


def _pubsub_push(request, topic: str):
    if settings.PUBSUB_AUTH == "oidc":
        refusal = oidc_refusal(request)
        if refusal is not None:
            return refusal
    elif not bearer_matches(request, settings.PUBSUB_PUSH_TOKEN):
        return JsonResponse(error_body("missing or wrong bearer token", "Authorization"), status=401)
    limit = settings.PUBSUB_PUSH_MAX_BODY_BYTES
    try:
        # Read from the stream, not request.body: that refuses anything over DATA_UPLOAD_MAX_MEMORY_SIZE
        # (2.5 MB, kept for the admin) with an HTML 400, and Pub/Sub messages go up to 10 MB.
        body = request.read(limit + 1)
        if len(body) > limit:
            inbox_refuse_oversized(topic_name=topic, head=body, limit=limit,
                                   rest=iter(lambda: request.read(_CHUNK_BYTES), b""))
        inbox_receive(topic_name=topic, body=body, group_commit=settings.GROUP_COMMIT,
                      message_id=request.META.get("HTTP_X_GOOG_PUBSUB_MESSAGE_ID", ""))
    except ValidationFailed as exc:
        response = JsonResponse(error_body(exc.message, exc.field), status=400)
        # Our WARNING line with the topic and event ID instead of django.request's bare "Bad Request: <path>"
        # (the error text stays out: it may quote the body).
        response._has_been_logged = True
        logger.warning("push refused with 400 and kept as a dead letter (field %s)", exc.field or "-",
                       extra={"topic": topic_label(topic), "event_id": _event_id(body) or None})
        return response
    return HttpResponse(status=204)


def _event_id(body: bytes) -> str:
    """The refused body's event_id when it decodes that far (the dead letter stores the same)."""
    from .services.letter_body import letter_event_id

    return letter_event_id(body[: 64 * 1024].decode("utf-8", errors="replace"))
