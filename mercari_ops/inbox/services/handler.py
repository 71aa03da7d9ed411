"""The outcome of an event, and the handler run: how a handler's result or failure is written on its row."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import DataError, connection, transaction
from django.utils import timezone

from mercari_ops.common.jsonsafe import path_storable, text_storable
from mercari_ops.common.logging import log_safe_error

from .. import inbox_sql
from ..models import InboxEvent
from ..registry import PermanentEventError, Topic, Waiting

# The package's name, not this module's: log lines (and alerts on them) keep the logger they had.
logger = logging.getLogger(__package__)


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
    # Not recorded at all: the event's own data failed in the database (a DataError at the insert). Its push
    # answers 400 and its body is kept as a dead letter, as for a body that fails validation.
    refused: bool = False


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
    if isinstance(exc, DataError):  # a value its column cannot hold: the same event fails again, never retried
        exc = PermanentEventError(*data_error_detail(exc))
    if isinstance(exc, PermanentEventError):
        InboxEvent.objects.filter(pk=row_id).update(
            status=InboxEvent.Status.DEAD, payload=payload, attempts=attempts_before + 1,
            last_error=text_storable(exc.message), error_field=path_storable(exc.field or ""), next_attempt_at=None,
        )
        return Result(Outcome.DEAD, event_id, exc.message, exc.field)
    if not connection.is_usable():
        raise exc
    attempts = attempts_before + 1
    dead = attempts >= settings.INBOX_MAX_ATTEMPTS
    logger.warning("inbox %s/%s attempt %s failed: %s", topic.name, event_id, attempts, log_safe_error(exc, payload),
                   extra={"topic": topic.name, "event_id": event_id})
    InboxEvent.objects.filter(pk=row_id).update(
        status=InboxEvent.Status.DEAD if dead else InboxEvent.Status.RETRY,
        payload=payload, attempts=attempts, last_error=text_storable(f"{type(exc).__name__}: {exc}"[:2000]),
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


def data_error_detail(exc: DataError) -> tuple[str, str | None]:
    """(message, column) of a DataError, from PostgreSQL's diagnostics when it has them; never the row's values."""
    diag = getattr(exc.__cause__, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc).strip().split("\n")[0] or "invalid value")
    column = getattr(diag, "column_name", None)
    return f"a value cannot be stored: {text_storable(message)[:500]}", column
