"""Every write of the event inbox.

Flow of one push: decode the envelope and the event, validate it against the
topic's schema (failure: dead letter, 400), then in one transaction insert the
(topic, event_id) row -- ON CONFLICT DO NOTHING is the dedupe -- and run the
topic's handler in a savepoint. The row is written optimistically as
processed; other outcomes update it. A transient handler failure leaves the
row in `retry` with a backoff; `inbox_process_due` (a beat job) runs it again
until it succeeds or reaches INBOX_MAX_ATTEMPTS (then `dead`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.groupcommit import group_committer

from . import inbox_sql
from .models import DeadLetter, InboxEvent
from .registry import PermanentEventError, Topic, Waiting, get_topic

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    PROCESSED = "processed"
    WAITING = "waiting"
    DUPLICATE = "duplicate"
    RETRY = "retry"
    DEAD = "dead"


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    event_id: str | None = None
    error: str | None = None
    field: str | None = None


# --- decoding ----------------------------------------------------------------


def envelope_decode(body: bytes, message_id: str = "") -> tuple[dict, str]:
    """The event and the Pub/Sub message ID of a push body, or ValidationFailed naming the field.

    Both forms of push, told apart by the body alone: wrapped (the standard push: a JSON object with
    `message` and `subscription`, the event being the base64 `message.data`) and unwrapped (Google's
    "no wrapper" option: the body is the event JSON itself). An unwrapped push carries its message ID,
    when the subscription writes metadata, in the x-goog-pubsub-message-id header: the caller passes it
    as `message_id`.
    """
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("body is not valid JSON", "body") from None
    if not isinstance(parsed, dict):
        raise ValidationFailed("body must be a JSON object (an event, or a Pub/Sub push envelope)", "body")
    if "message" not in parsed or "subscription" not in parsed:
        return parsed, message_id[:128]
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
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed("message.data does not decode to JSON", "message.data") from None
    message_id = message.get("messageId") or message.get("message_id") or ""
    return event, str(message_id)[:128]


def event_clean(topic: Topic, event) -> dict:
    return topic.schema.clean(event)


# --- dead letters --------------------------------------------------------------


def dead_letter_record(*, topic: str, body: bytes | str, error: str, field: str | None,
                       sha256: str | None = None) -> DeadLetter:
    """Store a bad body once (per topic + sha256); a repeat only bumps its counter.

    `sha256` is given when `body` is only the head of a body too large to keep (the hash of all of it).
    An unwrapped push may carry any bytes: what is not UTF-8, and NUL (which PostgreSQL text cannot
    hold), is kept as U+FFFD.
    """
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    digest = sha256 or hashlib.sha256(text.encode()).hexdigest()
    text = text.replace("\x00", "\ufffd")
    now = timezone.now()
    try:
        with transaction.atomic():
            letter, created = DeadLetter.objects.get_or_create(
                topic=topic[:64],
                body_sha256=digest,
                defaults={"raw_body": text, "error": error, "field": field or ""},
            )
    except IntegrityError:  # a concurrent identical body won the insert
        letter, created = DeadLetter.objects.get(topic=topic[:64], body_sha256=digest), False
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


# --- the handler run -------------------------------------------------------------


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(2 ** attempts, 300))


def _handler_run(topic: Topic, row_id: int, payload: dict, attempts_before: int) -> Result:
    """Run the handler in a savepoint and write its outcome on the row. Caller holds a transaction."""
    try:
        with transaction.atomic():
            result = topic.handle(payload)
    except Exception as exc:
        return _failure_write(topic, row_id, payload, attempts_before, exc)
    if isinstance(result, Waiting):
        return _waiting_write(row_id, payload, attempts_before, result)
    return Result(Outcome.PROCESSED, payload.get("event_id"))


def _waiting_write(row_id: int, payload: dict, attempts_before: int, waiting: Waiting) -> Result:
    InboxEvent.objects.filter(pk=row_id).update(
        status=InboxEvent.Status.WAITING, payload=payload, waiting_on=waiting.on[:128],
        attempts=attempts_before, last_error=waiting.reason, next_attempt_at=None,
    )
    return Result(Outcome.WAITING, payload.get("event_id"))


def _failure_write(topic: Topic, row_id: int, payload: dict, attempts_before: int, exc: Exception) -> Result:
    """Dead for a permanent error; retry with backoff for anything else (never lost)."""
    event_id = payload.get("event_id")
    if isinstance(exc, PermanentEventError):
        InboxEvent.objects.filter(pk=row_id).update(
            status=InboxEvent.Status.DEAD, payload=payload, attempts=attempts_before + 1,
            last_error=exc.message, error_field=exc.field or "", next_attempt_at=None,
        )
        return Result(Outcome.DEAD, event_id, exc.message, exc.field)
    if not connection.is_usable():
        raise exc
    attempts = attempts_before + 1
    dead = attempts >= settings.INBOX_MAX_ATTEMPTS
    logger.warning("inbox %s/%s attempt %s failed: %r", topic.name, event_id, attempts, exc)
    InboxEvent.objects.filter(pk=row_id).update(
        status=InboxEvent.Status.DEAD if dead else InboxEvent.Status.RETRY,
        payload=payload, attempts=attempts, last_error=f"{type(exc).__name__}: {exc}"[:2000],
        next_attempt_at=None if dead else timezone.now() + _backoff(attempts),
    )
    return Result(Outcome.DEAD if dead else Outcome.RETRY, event_id, str(exc))


def _mark_processed(row_id: int, topic: Topic, attempts: int) -> None:
    InboxEvent.objects.filter(pk=row_id).update(
        status=InboxEvent.Status.PROCESSED, processed_at=timezone.now(), attempts=attempts,
        waiting_on="", next_attempt_at=None, last_error="", error_field="",
        **({} if topic.keep_payload else {"payload": None}),
    )


def _rows_insert(topic: Topic, events: list[tuple[dict, str]]) -> dict[str, int]:
    """Insert rows as processed; {event_id: row id} of those that were new (see inbox_sql.rows_insert)."""
    return inbox_sql.rows_insert(topic=topic.name, events=events, keep_payload=topic.keep_payload,
                                 now=timezone.now())


class _HandlerFailed(Exception):
    def __init__(self, cause: Exception):
        super().__init__(str(cause))
        self.cause = cause


def inbox_accept(*, topic: Topic, event: dict, message_id: str = "") -> Result:
    """Record a cleaned event once and hand it to its handler, in one transaction.

    The happy path is one INSERT and the handler's own writes in a single
    transaction (no savepoint round trips). If the handler fails, that
    transaction rolls back whole and the row is recorded again, on its own,
    with the failure's outcome (dead, or retry with backoff).
    """
    event_id = event["event_id"]
    try:
        with transaction.atomic():
            inserted = _rows_insert(topic, [(event, message_id)])
            if not inserted:
                return Result(Outcome.DUPLICATE, event_id)
            try:
                result = topic.handle(event)
            except Exception as exc:
                raise _HandlerFailed(exc) from exc
            if isinstance(result, Waiting):
                return _waiting_write(inserted[event_id], event, 0, result)
            return Result(Outcome.PROCESSED, event_id)
    except _HandlerFailed as failed:
        with transaction.atomic():
            inserted = _rows_insert(topic, [(event, message_id)])
            if not inserted:  # a concurrent delivery recorded it meanwhile
                return Result(Outcome.DUPLICATE, event_id)
            return _failure_write(topic, inserted[event_id], event, 0, failed.cause)


def inbox_accept_group(items: list[tuple[Topic, dict, str]]) -> list[Result]:
    """Group commit of concurrent pushes: (topic, event, message_id) items in one transaction.

    One multi-row insert per topic for the dedupe (a repeat of an event_id within the group is a
    duplicate of its first occurrence), then the handlers of the new events: a topic's
    `handle_batch` when it has one, otherwise `handle` event by event in arrival order. Events
    recorded in one group see each other's effects exactly as if they had come one by one (a
    child whose parent comes later in the group waits, and the parent's handler releases it).
    If any handler fails, the whole group rolls back and every item is accepted again on its own
    through `inbox_accept`, so a failing event never changes another event's outcome.
    """
    results: list[Result | None] = [None] * len(items)
    try:
        with transaction.atomic():
            by_topic: dict[str, list[int]] = {}
            for index, (topic, _, _) in enumerate(items):
                by_topic.setdefault(topic.name, []).append(index)
            new_rows: dict[int, int] = {}
            for indexes in by_topic.values():
                topic = items[indexes[0]][0]
                inserted = _rows_insert(topic, [(items[i][1], items[i][2]) for i in indexes])
                for i in indexes:
                    row_id = inserted.pop(items[i][1]["event_id"], None)
                    if row_id is None:
                        results[i] = Result(Outcome.DUPLICATE, items[i][1]["event_id"])
                    else:
                        new_rows[i] = row_id
            for indexes in by_topic.values():
                topic = items[indexes[0]][0]
                new_indexes = [i for i in indexes if i in new_rows]
                if not new_indexes:
                    continue
                if topic.handle_batch is not None:
                    try:
                        topic.handle_batch([items[i][1] for i in new_indexes])
                    except Exception as exc:
                        raise _HandlerFailed(exc) from exc
                    for i in new_indexes:
                        results[i] = Result(Outcome.PROCESSED, items[i][1]["event_id"])
                    continue
                for i in new_indexes:
                    event = items[i][1]
                    try:
                        outcome = topic.handle(event)
                    except Exception as exc:
                        raise _HandlerFailed(exc) from exc
                    # written at once: a parent later in the group must find this event waiting to release it
                    results[i] = (_waiting_write(new_rows[i], event, 0, outcome) if isinstance(outcome, Waiting)
                                  else Result(Outcome.PROCESSED, event["event_id"]))
    except _HandlerFailed:
        return [inbox_accept(topic=topic, event=event, message_id=message_id) for topic, event, message_id in items]
    return results


def inbox_receive(*, topic_name: str, body: bytes, record_dead: bool = True, group_commit: bool = False,
                  message_id: str = "") -> Result:
    """The push endpoint's service: decode, validate, accept. Raises ValidationFailed (400).

    `body` is wrapped or unwrapped (see envelope_decode); `message_id` is the x-goog-pubsub-message-id
    header of an unwrapped push, if any.

    With `group_commit` the accept runs in one transaction together with the pushes of this
    process that arrived at the same moment (see mercari_ops.common.groupcommit).
    """
    topic = get_topic(topic_name)
    try:
        if topic is None:
            raise ValidationFailed(f"unknown topic {topic_name!r}", "topic")
        raw_event, message_id = envelope_decode(body, message_id)
        event = event_clean(topic, raw_event)
    except ValidationFailed as exc:
        if record_dead:
            dead_letter_record(topic=topic_name, body=body, error=exc.message, field=exc.field)
        raise
    if group_commit:
        committer = group_committer("inbox", inbox_accept_group, max_group=settings.GROUP_COMMIT_MAX)
        result = committer.submit((topic, event, message_id), timeout=settings.GROUP_COMMIT_TIMEOUT_SECONDS)
    else:
        result = inbox_accept(topic=topic, event=event, message_id=message_id)
    if result.outcome is Outcome.DEAD:
        raise PermanentEventError(result.error or "event can never succeed", result.field)
    return result


def inbox_accept_batch(*, topic: Topic, events: list[dict]) -> dict[Outcome, int]:
    """Backfill path: one transaction per batch, one multi-row insert for the dedupe.

    New events go to the topic's `handle_batch` when it has one (one set-based
    write for the whole batch), otherwise through the handler one by one.
    """
    counts = {outcome: 0 for outcome in Outcome}
    unique: dict[str, dict] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    counts[Outcome.DUPLICATE] += len(events) - len(unique)
    with transaction.atomic():
        inserted = _rows_insert(topic, [(event, "") for event in unique.values()])
        counts[Outcome.DUPLICATE] += len(unique) - len(inserted)
        new_events = [event for event_id, event in unique.items() if event_id in inserted]  # in stream order
        if topic.handle_batch is not None and new_events:
            try:
                with transaction.atomic():
                    topic.handle_batch(new_events)
                counts[Outcome.PROCESSED] += len(new_events)
                return counts
            except Exception as exc:
                if not connection.is_usable():
                    raise
                logger.warning("batch handler for %s failed, falling back to one by one: %r", topic.name, exc)
        for event in new_events:
            counts[_handler_run(topic, inserted[event["event_id"]], event, attempts_before=0).outcome] += 1
    return counts


def inbox_accept_stream(*, topic: Topic, events: Iterable[dict], batch_size: int = 1000, workers: int = 1,
                        progress: Callable[[int], None] | None = None) -> dict[Outcome, int]:
    """Backfill a stream of cleaned events in batches through `inbox_accept_batch`.

    With `workers` > 1 and a topic that declares a `partition_key`, events are split by that key over
    `workers` threads, each with its own connection and transactions: events of one key always go to
    the same thread, in stream order, and two threads never touch the same key, so they neither wait
    for each other's row locks nor change each other's outcome. While one batch waits for PostgreSQL,
    the next is parsed and another is applied. A caller already inside a transaction gets everything
    applied in that transaction, in order, on its own connection (one worker).
    """
    counts = {outcome: 0 for outcome in Outcome}
    lock = threading.Lock()

    def apply(batch: list[dict]) -> None:
        outcome_counts = inbox_accept_batch(topic=topic, events=batch)
        with lock:
            for outcome, n in outcome_counts.items():
                counts[outcome] += n
            if progress:
                progress(len(batch))

    parts = workers if workers > 1 and topic.partition_key is not None and not connection.in_atomic_block else 1
    failures: list[BaseException] = []
    queues: list[queue.Queue] = [queue.Queue(maxsize=2) for _ in range(parts)] if parts > 1 else []

    def work(jobs: queue.Queue) -> None:
        try:
            while (batch := jobs.get()) is not None:
                if not failures:  # after a failure, drain without applying so the reader never blocks
                    try:
                        apply(batch)
                    except BaseException as exc:
                        failures.append(exc)
        finally:
            connection.close()

    send = (lambda part, batch: queues[part].put(batch)) if queues else (lambda part, batch: apply(batch))
    threads = [threading.Thread(target=work, args=(jobs,), name=f"ingest-{n}") for n, jobs in enumerate(queues)]
    for thread in threads:
        thread.start()
    batches: list[list[dict]] = [[] for _ in range(parts)]
    try:
        for event in events:
            if failures:
                break
            part = zlib.crc32(str(event.get(topic.partition_key)).encode()) % parts if parts > 1 else 0
            batches[part].append(event)
            if len(batches[part]) >= batch_size:
                send(part, batches[part])
                batches[part] = []
        for part, batch in enumerate(batches):
            if batch and not failures:
                send(part, batch)
    finally:
        for jobs in queues:
            jobs.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return counts


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


def dead_letter_replay(*, letter_pk: int, by: str = "") -> Result:
    """Operator action: push the (possibly corrected) raw body through the normal path again."""
    letter = DeadLetter.objects.get(pk=letter_pk)
    try:
        result = inbox_receive(topic_name=letter.topic, body=letter.raw_body.encode(), record_dead=False)
    except ValidationFailed as exc:
        DeadLetter.objects.filter(pk=letter.pk).update(error=exc.message, field=exc.field or "")
        return Result(Outcome.DEAD, None, exc.message, exc.field)
    DeadLetter.objects.filter(pk=letter.pk).update(
        status=DeadLetter.Status.REPLAYED, resolved_at=timezone.now(), resolved_by=by
    )
    return result


def dead_letter_discard(*, letter_pk: int, by: str = "") -> None:
    DeadLetter.objects.filter(pk=letter_pk, status=DeadLetter.Status.OPEN).update(
        status=DeadLetter.Status.DISCARDED, resolved_at=timezone.now(), resolved_by=by
    )


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
