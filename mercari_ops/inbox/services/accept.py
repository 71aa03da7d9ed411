"""Accepting events: one push, a group commit of concurrent pushes, a backfill batch, a backfill stream."""

from __future__ import annotations

import json
import logging
import queue
import threading
import zlib
from collections.abc import Callable, Iterable

from django.conf import settings
from django.db import DatabaseError, DataError, connection, transaction

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.groupcommit import database_unreachable, group_committer
from mercari_ops.common.logging import log_safe_error

from ..metrics import DEAD_LETTERS_RECEIVED, EVENTS, topic_label
from ..registry import PermanentEventError, Topic, Waiting, get_topic
from .envelope import dead_letter_record, envelope_decode, event_clean
from .handler import (
    Outcome,
    Result,
    _failure_write,
    _handler_run,
    _HandlerFailed,
    _rows_insert,
    _waiting_write,
    data_error_detail,
)

# The package's name, not this module's: log lines (and alerts on them) keep the logger they had.
logger = logging.getLogger(__package__)


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
    If any handler fails, or the database refuses any event's data (a DataError or IntegrityError: anything
    but the database being unreachable), the whole group rolls back and every item is accepted again on its
    own through `inbox_accept`, so a failing event never changes another event's outcome.
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
        pass
    except DatabaseError as exc:
        if database_unreachable(exc):
            raise
        logger.warning("inbox group of %s refused by the database (%s): accepting its events one by one",
                       len(items), log_safe_error(exc, [event for _, event, _ in items]))
    else:
        return results
    return [inbox_accept_alone(topic=topic, event=event, message_id=message_id) for topic, event, message_id in items]


def inbox_accept_alone(*, topic: Topic, event: dict, message_id: str = "") -> Result:
    """`inbox_accept` in its own transaction; an event whose data the database refuses is `refused`, not raised.

    Validation keeps such data out (strings to their column's length, bounded integers, no NUL); this is
    the last line, so one such event is a 400 for its sender and never an error for anyone else.
    """
    try:
        return inbox_accept(topic=topic, event=event, message_id=message_id)
    except DatabaseError as exc:
        if database_unreachable(exc):
            raise
        logger.warning("inbox %s/%s refused by the database: %s", topic.name, event.get("event_id"),
                       log_safe_error(exc, event), extra={"topic": topic.name, "event_id": event.get("event_id")})
        message, field = data_error_detail(exc) if isinstance(exc, DataError) else (
            "the event breaks a database constraint", None)
        return Result(Outcome.DEAD, event.get("event_id"), message, field, refused=True)


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
            DEAD_LETTERS_RECEIVED.labels(topic_label(topic_name)).inc()
        raise
    if group_commit:
        committer = group_committer("inbox", inbox_accept_group, max_group=settings.GROUP_COMMIT_MAX)
        try:
            result = committer.submit((topic, event, message_id), timeout=settings.GROUP_COMMIT_TIMEOUT_SECONDS)
        except DataError as exc:  # this event's own (inbox_accept_group refuses it first; kept as a last line)
            result = Result(Outcome.DEAD, event["event_id"], *data_error_detail(exc), refused=True)
    else:
        result = inbox_accept_alone(topic=topic, event=event, message_id=message_id)
    if result.refused:
        if record_dead:
            dead_letter_record(topic=topic_name, body=body, error=result.error, field=result.field)
            DEAD_LETTERS_RECEIVED.labels(topic.name).inc()
        raise ValidationFailed(result.error, result.field)
    EVENTS.labels(topic.name, result.outcome.value).inc()
    if result.outcome is Outcome.DEAD:
        raise PermanentEventError(result.error or "event can never succeed", result.field)
    return result


def inbox_accept_batch(*, topic: Topic, events: list[dict]) -> dict[Outcome, int]:
    """Backfill path: one transaction per batch, one multi-row insert for the dedupe.

    New events go to the topic's `handle_batch` when it has one (one set-based
    write for the whole batch), otherwise through the handler one by one. If the database refuses the
    batch (an event whose data passed validation but not its column: anything but the database being
    unreachable), the batch rolls back and each event is accepted on its own, as a push would be: the
    culprit becomes a dead letter and counts as dead, its neighbours are recorded as if it were not there.
    """
    unique: dict[str, dict] = {}
    for event in events:
        unique.setdefault(event["event_id"], event)
    try:
        counts = _batch_apply(topic, unique)
    except DatabaseError as exc:
        if database_unreachable(exc):
            raise
        logger.warning("inbox batch of %s for %s refused by the database (%s): accepting its events one by one",
                       len(unique), topic.name, log_safe_error(exc, list(unique.values())),
                       extra={"topic": topic.name})
        counts = {outcome: 0 for outcome in Outcome}
        for event in unique.values():
            result = inbox_accept_alone(topic=topic, event=event)
            if result.refused:
                dead_letter_record(topic=topic.name, body=json.dumps(event, ensure_ascii=False, default=str),
                                   error=result.error, field=result.field)
                DEAD_LETTERS_RECEIVED.labels(topic.name).inc()
            counts[result.outcome] += 1
    counts[Outcome.DUPLICATE] += len(events) - len(unique)
    return counts


def _batch_apply(topic: Topic, unique: dict[str, dict]) -> dict[Outcome, int]:
    counts = {outcome: 0 for outcome in Outcome}
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
                logger.warning("batch handler for %s failed, falling back to one by one: %s", topic.name,
                               log_safe_error(exc, new_events), extra={"topic": topic.name})
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
        for outcome, n in outcome_counts.items():
            if n:
                EVENTS.labels(topic.name, outcome.value).inc(n)
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
