"""Retries and operator operations: process due, replay, discard, waiting release and sweep, retention."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone
from django.utils.translation import gettext

from mercari_ops.common.audit import audit_record
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import text_storable

from .. import inbox_sql
from ..metrics import EVENTS
from ..models import DeadLetter, InboxEvent
from ..registry import get_topic
from .accept import inbox_receive
from .handler import Outcome, Result, _handler_run, _mark_processed
from .letter_body import attributes_clean, letter_body_decode, letter_body_encode, letter_event_id

# The package's name, not this module's: log lines (and alerts on them) keep the logger they had.
logger = logging.getLogger(__package__)


# --- retries, replay, waiting, retention ------------------------------------------


def _row_rerun(row: InboxEvent) -> Result:
    topic = get_topic(row.topic)
    if topic is None:
        InboxEvent.objects.filter(pk=row.pk).update(
            status=InboxEvent.Status.DEAD, last_error=f"no handler for topic {row.topic!r}", next_attempt_at=None
        )
        return Result(Outcome.DEAD, row.event_id, "no handler")
    result = _handler_run(topic, row.pk, row.payload, attempts_before=row.attempts)
    if result.outcome is Outcome.PROCESSED:
        attempts = row.attempts + 1
        _mark_processed(row.pk, topic, attempts)
    return result


def inbox_process_due(*, limit: int = 500, now=None) -> dict[str, int]:
    """Retry rows whose backoff has passed, one row per transaction, claimed with SKIP LOCKED."""
    counts: dict[str, int] = {}
    for _ in range(limit):
        with transaction.atomic():
            row = (
                InboxEvent.objects.select_for_update(skip_locked=True)
                .filter(status=InboxEvent.Status.RETRY, next_attempt_at__lte=now or timezone.now())
                .order_by("next_attempt_at")
                .first()
            )
            if row is None:
                break
            outcome = _row_rerun(row).outcome
        counts[outcome.value] = counts.get(outcome.value, 0) + 1
        EVENTS.labels(row.topic, outcome.value).inc()
    return counts


def inbox_event_replay(*, event_pk: int) -> Result:
    """Operator action: run a dead, waiting or retrying event through its handler now."""
    with transaction.atomic():
        row = InboxEvent.objects.select_for_update().get(pk=event_pk)
        if row.status == InboxEvent.Status.PROCESSED:
            return Result(Outcome.DUPLICATE, row.event_id, "already processed")
        if row.payload is None:
            return Result(Outcome.DEAD, row.event_id, "payload no longer kept")
        return _row_rerun(row)


def inbox_event_discard(*, event_pk: int, by: str = "") -> None:
    InboxEvent.objects.filter(pk=event_pk).exclude(status=InboxEvent.Status.PROCESSED).update(
        status=InboxEvent.Status.DISCARDED, next_attempt_at=None,
        last_error=f"discarded by {by}" if by else "discarded",
    )


def dead_letter_replay(*, letter_pk: int, by: str = "", request=None) -> Result:
    """Operator action: push the (possibly corrected) raw body through the normal path again."""
    letter = DeadLetter.objects.get(pk=letter_pk)
    try:
        result = inbox_receive(topic_name=letter.topic, body=letter.raw_body.encode(), record_dead=False)
    except ValidationFailed as exc:
        with transaction.atomic():
            DeadLetter.objects.filter(pk=letter.pk).update(error=exc.message, field=exc.field or "")
            audit_record(action="inbox.dead_letter_replay", target=letter, request=request, actor=by or None,
                         before={"status": letter.status}, after={"outcome": "dead", "error": exc.message})
        return Result(Outcome.DEAD, None, exc.message, exc.field)
    with transaction.atomic():
        DeadLetter.objects.filter(pk=letter.pk).update(
            status=DeadLetter.Status.REPLAYED, resolved_at=timezone.now(), resolved_by=by
        )
        audit_record(action="inbox.dead_letter_replay", target=letter, request=request, actor=by or None,
                     before={"status": letter.status},
                     after={"status": DeadLetter.Status.REPLAYED, "outcome": result.outcome.value,
                            "event_id": result.event_id})
    return result


def dead_letter_discard(*, letter_pk: int, by: str = "", request=None) -> bool:
    """Operator action: close an open letter without replaying it. False when it was not open."""
    with transaction.atomic():
        letter = DeadLetter.objects.select_for_update().filter(pk=letter_pk, status=DeadLetter.Status.OPEN).first()
        if letter is None:
            return False
        DeadLetter.objects.filter(pk=letter.pk).update(
            status=DeadLetter.Status.DISCARDED, resolved_at=timezone.now(), resolved_by=by
        )
        audit_record(action="inbox.dead_letter_discard", target=letter, request=request, actor=by or None,
                     before={"status": letter.status}, after={"status": DeadLetter.Status.DISCARDED})
    return True


def _open_letter_locked(letter_pk: int) -> DeadLetter:
    letter = DeadLetter.objects.select_for_update().get(pk=letter_pk)
    if letter.status != DeadLetter.Status.OPEN:
        raise ValidationFailed(gettext("Only an open dead letter can be edited (this one is %(status)s).")
                               % {"status": letter.get_status_display()}, "status")
    return letter


def dead_letter_event_check(*, topic_name: str, event, attributes=None) -> None:
    """ValidationFailed, naming the field, unless `event` passes the topic's schema (the push path's check)."""
    topic = get_topic(topic_name)
    if topic is None:
        raise ValidationFailed(gettext("Unknown topic %(topic)r: there is no schema to check the event against.")
                               % {"topic": topic_name}, "topic")
    topic.schema.clean(event)
    if attributes is not None:
        attributes_clean(attributes)


def dead_letter_body_edit(*, letter_pk: int, event: dict, by: str = "", attributes: dict | None = None,
                          request=None) -> DeadLetter:
    """Operator fix: put `event` (and `attributes`, when given) back into the letter's Pub/Sub envelope.

    The event is checked against the topic's schema first, so a fix that would fail again is refused
    here, naming the field, and nothing is stored. The body stays an envelope (base64 `message.data`),
    so a replay goes through the push path exactly as Pub/Sub sends it; the SHA-256 stays that of the
    body as received (a repeat of the original bad body still counts on this letter).
    """
    with transaction.atomic():
        letter = _open_letter_locked(letter_pk)
        decoded = letter_body_decode(letter.raw_body)
        if decoded is None:
            raise ValidationFailed(gettext("The body is not a Pub/Sub envelope: edit the raw body instead."),
                                   "raw_body")
        dead_letter_event_check(topic_name=letter.topic, event=event, attributes=attributes)
        body = letter_body_encode(decoded, event=event, attributes=attributes)
        event_id = letter_event_id(body)
        audit_record(action="inbox.dead_letter_edit", target=letter, request=request, actor=by or None,
                     before={"event": decoded.event if decoded.event is not None else decoded.event_text,
                             "attributes": decoded.attributes},
                     after={"event": event, "attributes": decoded.attributes if attributes is None else attributes})
        DeadLetter.objects.filter(pk=letter.pk).update(raw_body=body, event_id=event_id)
        letter.raw_body, letter.event_id = body, event_id
    return letter


def dead_letter_raw_body_edit(*, letter_pk: int, raw_body: str, by: str = "", request=None) -> DeadLetter:
    """Operator fix of a body that is no decodable envelope: the raw text, as before, but audited."""
    with transaction.atomic():
        letter = _open_letter_locked(letter_pk)
        raw_body = text_storable(raw_body)
        if raw_body == letter.raw_body:
            return letter
        event_id = letter_event_id(raw_body)
        audit_record(action="inbox.dead_letter_edit", target=letter, request=request, actor=by or None,
                     before={"raw_body": letter.raw_body}, after={"raw_body": raw_body})
        DeadLetter.objects.filter(pk=letter.pk).update(raw_body=raw_body, event_id=event_id)
        letter.raw_body, letter.event_id = raw_body, event_id
    return letter


def _order_value(value) -> datetime:
    """Events order by time, not by string: '...:00.5Z' must come after '...:00Z'."""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def inbox_release_waiting(*, topic_name: str, key: str) -> list[Result]:
    """Run the events waiting on `key` now that it exists, in the topic's order (occurred_at).

    Called by a handler inside the transaction that applied the awaited event,
    so children become visible together with their parent; a child's own
    handler may release its children in turn (recursively).
    """
    topic = get_topic(topic_name)
    rows = list(
        InboxEvent.objects.select_for_update()
        .filter(topic=topic_name, status=InboxEvent.Status.WAITING, waiting_on=key)
    )
    rows.sort(key=lambda row: (_order_value(row.payload.get(topic.order_key)), row.pk))
    results = []
    for row in rows:
        result = _handler_run(topic, row.pk, row.payload, attempts_before=row.attempts)
        if result.outcome is Outcome.PROCESSED:
            _mark_processed(row.pk, topic, row.attempts + 1)
        results.append(result)
    return results


def inbox_sweep_waiting(*, now=None) -> dict[str, int]:
    """Alert on events waiting too long, then dead-letter them (the awaited event never came)."""
    now = now or timezone.now()
    alert_before = now - timedelta(seconds=settings.INBOX_WAITING_ALERT_SECONDS)
    dead_before = now - timedelta(seconds=settings.INBOX_WAITING_TIMEOUT_SECONDS)
    waiting = InboxEvent.objects.filter(status=InboxEvent.Status.WAITING)
    alerted = waiting.filter(received_at__lte=alert_before, alerted_at__isnull=True)
    for row in alerted.only("topic", "event_id", "waiting_on")[:1000]:
        logger.error("inbox %s/%s still waiting on %s", row.topic, row.event_id, row.waiting_on)
    alerted_count = alerted.update(alerted_at=now)
    dead_count = waiting.filter(received_at__lte=dead_before).update(
        status=InboxEvent.Status.DEAD,
        last_error="waited too long for " + "the event it depends on",
        error_field="parent_id",
    )
    return {"alerted": alerted_count, "dead": dead_count}


def inbox_retention_apply(*, now=None, batch: int = 5000) -> int:
    """Drop processed payloads older than INBOX_RETENTION_DAYS; the (topic, event_id) key stays."""
    cutoff = (now or timezone.now()) - timedelta(days=settings.INBOX_RETENTION_DAYS)
    total = 0
    while True:
        ids = list(
            InboxEvent.objects.filter(
                status=InboxEvent.Status.PROCESSED, processed_at__lt=cutoff, payload__isnull=False
            ).values_list("pk", flat=True)[:batch]
        )
        if not ids:
            return total
        total += InboxEvent.objects.filter(pk__in=ids).update(payload=None)


def database_reachable() -> bool:
    try:
        inbox_sql.database_ping()
        return True
    except DatabaseError:
        return False
