"""The `loyalty-activity` handler: fold events into monthly totals and raise stages, set-based.

The inbox has already recorded (topic, event_id) in the same transaction -- that unique row is the
"counted once" guarantee -- and, with keep_payload=False, keeps nothing else of the event.

One call, whatever the number of events (1 from the push endpoint, 1,000+ from ingest_jsonl):
1. aggregate the events in memory per (customer, kind, month): amount sum, count (+1, or -1 for a
   negative amount, i.e. a reversal);
2. one upsert of the touched customers, sorted by customer_id, which also locks their rows (so
   concurrent events of one customer see each other's totals before evaluating the stage);
3. one upsert of the monthly totals (`ON CONFLICT DO UPDATE SET amount = amount + EXCLUDED.amount`);
4. one GROUP BY over the window rows of the touched customers, then upgrades (never downgrades:
   those are the nightly job's) recorded with the totals and thresholds that crossed.
Steps 2-4 are one statement (`loyalty_sql.CUSTOMERS_TOTALS_WINDOW`; one round trip: on the push endpoint
every round trip of a group's transaction costs milliseconds of waiting for a CPU on a busy host), with a
second window query only when a concurrent transaction wrote one of the customers' totals meanwhile.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime

from django.db import transaction
from django.utils import timezone

from mercari_ops.common.business_time import business_month_of_iso

from .. import selectors
from ..metrics import events_applied_counted
from ..rules import metrics_add, metrics_empty, window_start
from . import loyalty_sql
from .stages import CustomerState, restage


def _month_of(occurred_at: str) -> date:
    # The schema normalised occurred_at to UTC ISO ("2026-10-03T09:00:00Z"); the bucket is Japan's month.
    return business_month_of_iso(occurred_at)


def _customers_totals_window(customer_ids: list[str], sums: dict, now: datetime,
                             start: date) -> tuple[list[CustomerState], dict[int, dict[str, int]], int | None, bool]:
    """One round trip: lock/insert the customers, upsert their totals, read their window totals.

    The customers are locked in customer_id order and their totals only ever written under that lock
    (no deadlock). The window totals come from the same statement, i.e. from its snapshot, taken before
    the locks: they include neither this statement's own upsert (the caller adds its sums) nor a write
    committed by a concurrent transaction while this one waited for a customer's lock. The last case is
    detected, not guessed: every totals write bumps `totals_revision`, so a customer whose returned
    revision is not its snapshot revision + 1 (0 for a row this statement created) was written
    concurrently. Returns (states, window totals, highest rules version, True if none was written concurrently).
    """
    rows = loyalty_sql.customers_totals_window(
        customer_ids=customer_ids, sums=[(*key, *sums[key]) for key in sorted(sums)], now=now, start=start)
    states: dict[int, CustomerState] = {}
    metrics: dict[int, dict[str, int]] = {}
    unraced = True
    for pk, customer_id, stage, rules_stage, pin_floor, pin_expires_at, alone, kind, amount, count, _ in rows:
        if pk not in states:
            states[pk] = CustomerState(pk, customer_id, stage, rules_stage, pin_floor, pin_expires_at)
            metrics[pk] = metrics_empty()
            unraced = unraced and alone
        if kind is not None:
            metrics_add(metrics[pk], kind, int(amount), int(count))
    version = rows[0][-1] if rows else None
    return sorted(states.values(), key=lambda state: state.customer_id), metrics, version, unraced


@transaction.atomic
def activity_apply(*, events: list[dict], now: datetime | None = None) -> int:
    """Add cleaned activity events to the totals and raise stages at once. Returns the stage changes made."""
    return _apply(events, now)


def _apply(events: list[dict], now: datetime | None) -> int:
    # No savepoint of its own: the inbox handlers already run inside the transaction recording the event.
    if not events:
        return 0
    events_applied_counted(len(events))
    now = now or timezone.now()
    sums: dict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0, 0])
    for event in events:
        amount = event["amount"]
        entry = sums[(event["customer_id"], event["kind"], _month_of(event["occurred_at"]))]
        entry[0] += amount
        entry[1] += 1 if amount >= 0 else -1
    customer_ids = sorted({key[0] for key in sums})
    # The usual case, one statement: the window totals as of its snapshot plus this group's own sums.
    ruleset = selectors.rules_guess()
    start = window_start(now, ruleset.window_months)
    states, metrics, version, unraced = _customers_totals_window(customer_ids, sums, now, start)
    if unraced and selectors.rules_guess_holds(ruleset, version):
        pk_of = {state.customer_id: state.pk for state in states}
        for (customer_id, kind, month), (amount, count) in sums.items():
            if month >= start:
                metrics_add(metrics[pk_of[customer_id]], kind, amount, count)
        return restage(states=states, ruleset=ruleset, now=now, trigger="event", allow_up=True,
                       allow_down=False, metrics_by_pk=metrics)
    # A concurrent write of these customers' totals, or newer rules: read the rules and the window in a new
    # statement after the locks were taken; it sees every committed total of these customers plus our own.
    # (A recomputation for newer rules first waits for every writer of customers to finish, see
    # recompute_job_run, so a snapshot older than the newer rules never evaluates after it.)
    ruleset, metrics = selectors.rules_and_window_metrics(customer_pks=[state.pk for state in states], now=now)
    return restage(states=states, ruleset=ruleset, now=now, trigger="event", allow_up=True, allow_down=False,
                   metrics_by_pk=metrics)


def activity_handle(event: dict) -> None:
    """Inbox handler for one `loyalty-activity` event (push endpoint, retries, replays)."""
    _apply([event], None)


def activity_handle_batch(events: list[dict]) -> None:
    """Inbox batch handler (`ingest_jsonl`): one set-based write for the whole batch."""
    _apply(events, None)
