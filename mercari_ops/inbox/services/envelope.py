"""Decoding a push (wrapped or unwrapped) into an event, and the dead letters of bodies that fail it."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict, path_storable, text_storable

from ..models import DeadLetter
from ..registry import Topic
from .letter_body import letter_event_id

# --- decoding ----------------------------------------------------------------


def envelope_decode(body: bytes, message_id: str = "") -> tuple[dict, str]:
    """The event and the Pub/Sub message ID of a push body, or ValidationFailed naming the field.

    Both forms of push, told apart by the body alone: wrapped (the standard push: a JSON object with
    `message` and `subscription`, the event being the base64 `message.data`) and unwrapped (Google's
    "no wrapper" option: the body is the event JSON itself). An unwrapped push carries its message ID,
    when the subscription writes metadata, in the x-goog-pubsub-message-id header: the caller passes it
    as `message_id`.
    """
    parsed = json_loads_strict(body, field="body")
    if not isinstance(parsed, dict):
        raise ValidationFailed("body must be a JSON object (an event, or a Pub/Sub push envelope)", "body")
    if "message" not in parsed or "subscription" not in parsed:
        return parsed, text_storable(message_id)[:128]
    message = parsed["message"]
    if not isinstance(message, dict):
        raise ValidationFailed("message must be an object", "message")
    data = message.get("data")
    if not isinstance(data, str) or not data:
        raise ValidationFailed("message.data is required (base64 of the event JSON)", "message.data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ValidationFailed("message.data is not valid base64", "message.data") from None
    event = json_loads_strict(raw, field="message.data")
    if not isinstance(event, dict):
        raise ValidationFailed("message.data must be a JSON object (the event)", "message.data")
    message_id = message.get("messageId") or message.get("message_id") or ""
    return event, str(message_id)[:128]


def event_clean(topic: Topic, event) -> dict:
    return topic.schema.clean(event)


# --- dead letters --------------------------------------------------------------


def dead_letter_record(*, topic: str, body: bytes | str, error: str, field: str | None,
                       sha256: str | None = None) -> DeadLetter:
    """Store a bad body once (per topic + sha256 of its bytes); a repeat only bumps its counter.

    `sha256` is given when `body` is only the head of a body too large to keep (the hash of all of it).
    A push may carry any bytes, and the letter must be storable whatever they are: bytes that are not
    UTF-8 are kept as backslash escapes (`\\xff`, and the error says so), NUL (which PostgreSQL text
    cannot hold) as U+FFFD. The hash is of the bytes as received, so two bodies that differ only in
    bytes kept the same way are two letters. The topic, error and field are made storable too (the
    topic comes from the URL, the field may name a key holding NUL).
    """
    raw = body if isinstance(body, bytes) else body.encode("utf-8", errors="surrogatepass")
    digest = sha256 or hashlib.sha256(raw).hexdigest()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", errors="backslashreplace")
        error = f"{error} (bytes that are not UTF-8 are kept as \\xNN escapes)"
    text = text.replace("\x00", "\ufffd")
    topic = text_storable(topic)[:64]
    field = path_storable(field or "")
    error = text_storable(error)
    now = timezone.now()
    try:
        with transaction.atomic():
            letter, created = DeadLetter.objects.get_or_create(
                topic=topic,
                body_sha256=digest,
                defaults={"raw_body": text, "error": error, "field": field, "event_id": letter_event_id(text)},
            )
    except IntegrityError:  # a concurrent identical body won the insert
        letter, created = DeadLetter.objects.get(topic=topic, body_sha256=digest), False
    if not created:
        DeadLetter.objects.filter(pk=letter.pk).update(times_received=F("times_received") + 1, last_received_at=now)
    return letter


# Of a push body over PUBSUB_PUSH_MAX_BODY_BYTES, the dead letter keeps this many first bytes.
OVERSIZED_BODY_KEPT_BYTES = 64 * 1024


def inbox_refuse_oversized(*, topic_name: str, head: bytes, rest: Iterable[bytes], limit: int) -> None:
    """A push body larger than `limit` bytes: dead-letter its head, size and hash; raise ValidationFailed.

    `head` is what was read (more than `limit` bytes), `rest` the chunks still unread: they are hashed
    and counted, never held, so a body of any size costs one chunk of memory beyond the head.
    """
    digest = hashlib.sha256(head)
    size = len(head)
    kept = head[:OVERSIZED_BODY_KEPT_BYTES]
    for chunk in rest:
        digest.update(chunk)
        size += len(chunk)
        if len(kept) < OVERSIZED_BODY_KEPT_BYTES:
            kept += chunk[:OVERSIZED_BODY_KEPT_BYTES - len(kept)]
    message = f"body is {size} bytes, more than the {limit} a push may carry (PUBSUB_PUSH_MAX_BODY_BYTES)"
    dead_letter_record(topic=topic_name, body=kept, field="body", sha256=digest.hexdigest(),
                       error=f"{message}; kept: its first {len(kept)} bytes, sha256 {digest.hexdigest()}")
    raise ValidationFailed(message, "body")

