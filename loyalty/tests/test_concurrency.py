"""Real concurrent transactions on PostgreSQL: threads with their own connections, through the real
ingestion service (the push endpoint's `inbox_receive`)."""

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connections

from conftest import push_body
from loyalty.models import MonthlyTotal, StageChange
from loyalty.selectors import customer_stage_get
from loyalty.tests.factories import event, publish_rules
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.registry import get_topic
from mercari_ops.inbox.services import Outcome, inbox_accept_group, inbox_receive

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = "loyalty-activity"


def run_concurrently(bodies: list[bytes]) -> list:
    """Deliver each body from its own thread (own DB connection), all released at the same instant."""
    barrier = threading.Barrier(len(bodies))
    outcomes: list = [None] * len(bodies)

    def deliver(index: int, body: bytes) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = inbox_receive(topic_name=TOPIC, body=body).outcome.value
        except Exception as exc:  # surfaced by the assertions below
            outcomes[index] = repr(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=deliver, args=(i, body)) for i, body in enumerate(bodies)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def test_same_event_delivered_three_times_concurrently_is_counted_once():
    for round_no in range(15):
        same = event(customer_id="c-conc", amount=1000, event_id=f"dup-{round_no}")
        # three deliveries (each with its own Pub/Sub messageId) racing from separate workers
        outcomes = run_concurrently([push_body(same) for _ in range(3)])
        assert sorted(outcomes) == ["duplicate", "duplicate", "processed"], outcomes
    total = MonthlyTotal.objects.get(customer__customer_id="c-conc")
    assert (total.amount, total.count) == (15 * 1000, 15)
    assert InboxEvent.objects.filter(topic=TOPIC).count() == 15


def test_concurrent_events_of_one_customer_never_lose_an_upgrade():
    publish_rules()  # Silver needs buy_amount >= 10000 AND buy_count >= 2
    for round_no in range(10):
        customer = f"c-race-{round_no}"
        # neither event alone reaches Silver; together they do
        bodies = [push_body(event(customer_id=customer, amount=5000, event_id=f"{customer}-{i}")) for i in range(2)]
        bodies += [push_body(event(customer_id=customer, amount=5000, event_id=f"{customer}-0"))]
        outcomes = run_concurrently(bodies)
        assert sorted(outcomes) == ["duplicate", "processed", "processed"], outcomes
        assert customer_stage_get(customer_id=customer) == 20
        assert StageChange.objects.filter(customer__customer_id=customer).count() == 1
    assert {(t.amount, t.count) for t in MonthlyTotal.objects.all()} == {(10000, 2)}


def test_reversal_racing_its_activity_nets_out():
    at = "2026-10-05T10:00:00Z"
    bodies = [push_body(event(customer_id="c-rev", amount=2500, event_id="a-1", occurred_at=at)),
              push_body(event(customer_id="c-rev", amount=-2500, event_id="r-1", occurred_at=at)),
              push_body(event(customer_id="c-rev", amount=2500, event_id="a-1", occurred_at=at))]
    outcomes = run_concurrently(bodies)
    assert sorted(outcomes) == ["duplicate", "processed", "processed"], outcomes
    total = MonthlyTotal.objects.get()
    assert (total.amount, total.count) == (0, 0)


def _wait_until_blocked_on_a_lock(timeout: float = 10.0) -> None:
    """Return once some other session of this database waits for a lock (the racing transaction).

    PostgreSQL announces no lock wait, so this polls its activity view for that condition (every 10 ms);
    the test goes on the moment it holds, not after a guessed delay.
    """
    deadline = time.monotonic() + timeout
    with connections["default"].cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute("SELECT pg_stat_clear_snapshot()")  # the view is cached per transaction otherwise
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                           "AND wait_event_type = 'Lock'")
            if cursor.fetchone()[0]:
                return
            time.sleep(0.01)
    raise AssertionError("the other transaction never waited for the lock")


@pytest.mark.parametrize("path", ["handler", "push_group"])
def test_totals_committed_while_waiting_for_the_customer_lock_are_counted_in_the_evaluation(path):
    """The handler reads the window in the statement that locks the customer, i.e. from a snapshot taken
    before the lock. Deterministic race: a transaction holds the customer (its own month written, not yet
    committed) while a second one, for another month, waits for the lock; together they reach Silver.
    The second one runs the handler alone (retries, backfill) or inside a push group."""
    from django.db import transaction

    from loyalty.services import activity_apply

    publish_rules()  # Silver: buy_amount >= 10000 AND buy_count >= 2
    activity_apply(events=[event(customer_id="c-snap", amount=1, event_id="seed")])  # the row exists
    this_month = event(customer_id="c-snap", amount=5000, event_id="m0")
    last_month_at = datetime.now(UTC).replace(day=1, hour=12, microsecond=0) - timedelta(days=3)
    other_month = event(customer_id="c-snap", amount=5000, event_id="m1", occurred_at=last_month_at)
    errors = []

    def second() -> None:
        try:
            if path == "handler":
                activity_apply(events=[other_month])
            else:
                results = inbox_accept_group([(get_topic(TOPIC), other_month, "m-1")])
                assert [r.outcome for r in results] == [Outcome.PROCESSED]
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    with transaction.atomic():
        activity_apply(events=[this_month])  # holds the customer's row lock until this block commits
        racer = threading.Thread(target=second)
        racer.start()
        _wait_until_blocked_on_a_lock()
    racer.join(timeout=30)
    assert not errors, errors
    # neither transaction alone saw 10,001 in 3 events; the second one, once it had the lock, must have
    assert customer_stage_get(customer_id="c-snap") == 20
    change = StageChange.objects.get(customer__customer_id="c-snap")
    assert change.reason["totals"]["buy_amount"] == 10001
    assert change.reason["totals"]["buy_count"] == 3


def test_recomputation_waits_for_writers_that_started_under_older_rules():
    """Writers evaluate with the rules of their statement's snapshot: a recomputation must not pass a
    customer while such a writer is still running, or that writer's older-rules verdict would stand."""
    from django.db import transaction

    from loyalty.services import activity_apply
    from loyalty.services.rules import writers_drain

    activity_apply(events=[event(customer_id="c-drain", amount=1, event_id="seed-drain")])
    finished = threading.Event()

    def drain() -> None:
        try:
            writers_drain()
            finished.set()
        finally:
            connections.close_all()

    with transaction.atomic():
        activity_apply(events=[event(customer_id="c-drain", amount=10, event_id="d-1")])  # an open writer
        drainer = threading.Thread(target=drain)
        drainer.start()
        _wait_until_blocked_on_a_lock()
        assert not finished.is_set()
    drainer.join(timeout=30)
    assert finished.is_set()


def _group_deliver(barrier: threading.Barrier, topic, group: list[dict], results: list, index: int) -> None:
    try:
        barrier.wait(timeout=10)
        results[index] = inbox_accept_group([(topic, item, f"m-{index}") for item in group])
    except Exception as exc:  # surfaced by the caller's assertions
        results[index] = exc
    finally:
        connections.close_all()


def test_push_groups_racing_on_the_same_events_record_and_count_each_once():
    """Two group commits (two web workers) at once: events in both groups, in opposite orders (they
    deadlocked on the inbox key until the insert went in event_id order), a repeat inside one group and
    an event recorded before. Neither group fails, and each event counts once, in one group."""
    publish_rules()  # Silver: buy_amount >= 10000 AND buy_count >= 2; Gold: buy_amount >= 50000
    topic = get_topic(TOPIC)
    earlier = event(customer_id="c-g1", amount=1000, event_id="g-earlier")
    assert [r.outcome for r in inbox_accept_group([(topic, earlier, "m")])] == [Outcome.PROCESSED]
    for round_no in range(10):
        shared = [event(customer_id=f"c-g{n % 3}", amount=3000, event_id=f"g-{round_no}-s{n}") for n in range(6)]
        own = [event(customer_id="c-g1", amount=500, event_id=f"g-{round_no}-o{n}") for n in range(2)]
        groups = [shared + [own[0], own[0], earlier], list(reversed(shared)) + [own[1]]]
        barrier = threading.Barrier(2)
        results: list = [None, None]
        threads = [threading.Thread(target=_group_deliver, args=(barrier, topic, groups[i], results, i))
                   for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        outcomes: dict[str, list] = {}
        for group, group_results in zip(groups, results, strict=True):
            assert not isinstance(group_results, Exception), group_results
            for item, result in zip(group, group_results, strict=True):
                assert result.event_id == item["event_id"]
                outcomes.setdefault(item["event_id"], []).append(result.outcome)
        for event_id, seen in outcomes.items():
            expected = 0 if event_id == "g-earlier" else 1
            assert seen.count(Outcome.PROCESSED) == expected, (event_id, seen)
    amounts = {t.customer.customer_id: (t.amount, t.count) for t in MonthlyTotal.objects.select_related("customer")}
    # per round: c-g0 and c-g2 get 2 shared events each, c-g1 2 shared + 2 own; plus c-g1's earlier event
    assert amounts == {"c-g0": (10 * 6000, 20), "c-g2": (10 * 6000, 20), "c-g1": (1000 + 10 * 7000, 41)}
    assert InboxEvent.objects.filter(topic=TOPIC).count() == 1 + 10 * 8
    for customer in ("c-g0", "c-g1", "c-g2"):  # each crossed Silver, then Gold, exactly once
        assert customer_stage_get(customer_id=customer) == 30
        changes = StageChange.objects.filter(customer__customer_id=customer).order_by("at", "pk")
        assert [(c.from_stage, c.to_stage) for c in changes] == [(10, 20), (20, 30)]
