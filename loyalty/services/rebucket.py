"""Re-bucketing: activity counted in its UTC month (the rule before Japan's business months) moved to its
business month, from the events still at hand.

Until the switch, an event was counted in the UTC month of `occurred_at`; since, in its business month
(BUSINESS_TIME_ZONE). They differ for the last 9 hours of every UTC month (2026-11-30T15:00:00Z is
1 December in Japan). Monthly totals keep no event, so the events must come from elsewhere:
- the inbox's processed loyalty-activity rows that still hold a payload (few: the topic keeps none);
- exports of the original events, one JSON event per line as published (the `ingest_jsonl` format).

An event moves when (i) the inbox counted it (a processed row) before `switched_at`, the moment the
release with business months started counting -- events counted since are in their business month
already --, (ii) its UTC month differs from its business month, (iii) it was not moved before
(RebucketedEvent). Each batch is one transaction: the move (`rebucket_sql.MOVE`, which marks and moves in
one statement) and the restage of the customers whose totals moved, with the rules in force, upgrades and
downgrades (a move can bring an event, or a reversal, into the window). Resumable: run it again, moved
events are skipped by their marker. One run at a time (named lock).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from mercari_ops.common.business_time import business_month_of_iso, business_zone
from mercari_ops.common.errors import Conflict, ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.common.locks import try_named_lock

from .. import selectors
from ..topic import ACTIVITY_SCHEMA, TOPIC
from . import rebucket_sql
from .stages import CustomerState, restage

REBUCKET_LOCK = "loyalty.rebucket"
BAD_LINES_KEPT = 100


@dataclass(frozen=True)
class BadLine:
    where: str  # "events.jsonl:12" or "inbox row 345"
    error: str


@dataclass
class RebucketReport:
    switched_at: datetime
    dry_run: bool
    batches: int = 0
    read: int = 0
    moved: int = 0  # with dry_run: would move
    already_moved: int = 0
    not_counted: int = 0  # no processed inbox row: never counted (or not yet)
    counted_after_switch: int = 0  # counted in its business month already
    same_month: int = 0
    bad: int = 0
    bad_lines: list[BadLine] = field(default_factory=list)  # the first BAD_LINES_KEPT
    stage_changes: int = 0
    payloadless: int = 0  # processed rows counted before the switch without a payload
    payloadless_matched: int = 0  # events read that are such rows (a line repeated in the exports counts again)
    months_coincide: bool = False  # business months are UTC months: nothing ever moves

    def bad_add(self, where: str, error: str) -> None:
        self.bad += 1
        if len(self.bad_lines) < BAD_LINES_KEPT:
            self.bad_lines.append(BadLine(where, error))


def utc_month_of_iso(text: str) -> date:
    """The month an event was counted in before the switch: the UTC month of its occurred_at."""
    instant = datetime.fromisoformat(text).astimezone(UTC)
    return date(instant.year, instant.month, 1)


def business_months_are_utc_months() -> bool:
    zone = business_zone()
    return all(zone.utcoffset(datetime(2026, month, 1)) == timedelta(0) for month in (1, 7))


def jsonl_events(name: str, lines: Iterable[str]) -> Iterator[tuple[str, object]]:
    """(where, decoded event or the ValidationFailed of a line that is not JSON) per non-empty line."""
    for line_no, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        try:
            yield f"{name}:{line_no}", json_loads_strict(line, field="line")
        except ValidationFailed as refused:
            yield f"{name}:{line_no}", ValidationFailed(f"not valid JSON ({refused.message})", "line")


def _inbox_events(batch_size: int) -> Iterator[tuple[str, object]]:
    after = 0
    while page := selectors.inbox_payloads_next(topic=TOPIC, after_pk=after, limit=batch_size):
        for pk, payload in page:
            yield f"inbox row {pk}", payload
        after = page[-1][0]


def _batches(items: Iterator[tuple[str, object]], size: int, report: RebucketReport) -> Iterator[list[dict]]:
    """Batches of `size` cleaned events; bad ones are counted in `report` with where they were."""
    batch: list[dict] = []
    for where, raw in items:
        try:
            if isinstance(raw, ValidationFailed):
                raise raw
            batch.append(ACTIVITY_SCHEMA.clean(raw))
        except ValidationFailed as exc:
            report.bad_add(where, exc.message)
            continue
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _batch_rebucket(events: list[dict], report: RebucketReport, now: datetime, planned: set[str]) -> None:
    counted = selectors.inbox_counted_get(topic=TOPIC, event_ids=list({event["event_id"] for event in events}))
    moves: dict[str, tuple] = {}
    matched: set[str] = set()
    for event in events:
        report.read += 1
        event_id = event["event_id"]
        row = counted.get(event_id)
        before_switch = row is not None and (row[0] is None or row[0] < report.switched_at)
        if before_switch and not row[1] and event_id not in matched:
            matched.add(event_id)
            report.payloadless_matched += 1
        old_month, new_month = utc_month_of_iso(event["occurred_at"]), business_month_of_iso(event["occurred_at"])
        if old_month == new_month:
            report.same_month += 1
        elif row is None:
            report.not_counted += 1
        elif not before_switch:
            report.counted_after_switch += 1
        elif event_id in moves:
            report.already_moved += 1  # the same event twice in a batch: the inbox counted it once
        else:
            moves[event_id] = (event_id, event["customer_id"], event["kind"], event["amount"], old_month, new_month)
    if report.dry_run:
        done = selectors.rebucketed_among(event_ids=list(moves)) | (planned & moves.keys())
        planned.update(moves.keys() - done)
        report.moved += len(moves) - len(done)
        report.already_moved += len(done)
        return
    with transaction.atomic():
        states, moved = rebucket_sql.events_move(moves=list(moves.values()), now=now)
        report.moved += moved
        report.already_moved += len(moves) - moved
        if states:
            # The rules are read after the customers were locked: a newer version is either seen here or
            # recomputed after this transaction (the recomputation waits for writers of customers).
            report.stage_changes += restage(
                states=[CustomerState(*state) for state in states], ruleset=selectors.rules_active(), now=now,
                trigger="rebucket", allow_up=True, allow_down=True)


def rebucket_run(*, switched_at: datetime, jsonl: Sequence[tuple[str, Iterable[str]]] = (), batch_size: int = 2000,
                 dry_run: bool = False, now: datetime | None = None,
                 progress: Callable[[str, RebucketReport], None] | None = None) -> RebucketReport:
    """Move the activity counted before `switched_at` in its UTC month to its business month, once per event.

    Sources: the inbox rows of loyalty-activity still holding a payload, then each (name, lines) of `jsonl`.
    `progress(source, report)` after every batch (the report's counts are running totals). With `dry_run`
    nothing is written: `moved` counts what would move (stages are not evaluated).
    """
    if switched_at.tzinfo is None:
        raise ValidationFailed("switched_at must carry a UTC offset", "switched_at")
    if switched_at > timezone.now():
        raise ValidationFailed("switched_at is in the future: events counted since would be moved twice",
                               "switched_at")
    if batch_size < 1:
        raise ValidationFailed("the batch size must be at least 1", "batch")
    report = RebucketReport(switched_at=switched_at, dry_run=dry_run,
                            months_coincide=business_months_are_utc_months())
    planned: set[str] = set()  # dry run: the events it would have moved so far
    with try_named_lock(REBUCKET_LOCK) as acquired:
        if not acquired:
            raise Conflict("another loyalty_rebucket is running; run again when it has finished", "lock")
        sources = [("inbox", _inbox_events(batch_size))]
        sources += [(name, jsonl_events(name, lines)) for name, lines in jsonl]
        for name, items in sources:
            for batch in _batches(items, batch_size, report):
                _batch_rebucket(batch, report, now or timezone.now(), planned)
                report.batches += 1
                if progress:
                    progress(name, report)
        report.payloadless = selectors.inbox_payloadless_count(topic=TOPIC, processed_before=switched_at)
    return report
