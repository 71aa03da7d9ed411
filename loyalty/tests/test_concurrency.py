"""Real concurrent transactions on PostgreSQL: threads with their own connections, through the real
ingestion service (the push endpoint's `inbox_receive`)."""

import threading

import pytest
from django.db import connection, connections

from conftest import push_body
from loyalty.models import MonthlyTotal, StageChange
from loyalty.selectors import customer_stage_get
from loyalty.tests.factories import event, publish_rules
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.services import inbox_receive

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL concurrent transactions"),
    pytest.mark.django_db(transaction=True),
]

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
