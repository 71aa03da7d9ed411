"""Events of one payment delivered concurrently, shuffled, on two workers with their own connections."""

import random
import threading

import pytest
from django.db import connection

from conftest import push_body
from history.models import PaymentEntry
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.services import inbox_receive

from .factories import card_tree

pytestmark = pytest.mark.django_db(transaction=True)
TOPIC = "payment-events"


def trees(round_: int) -> tuple[list[dict], dict[str, str]]:
    events, expected = [], {}
    for n in range(24):
        key = f"r{round_}-{n}"
        kind = n % 4  # repaid, refunded after bill, refunded after repayment, billed only
        tree = card_tree(key, customer_id=f"c-{n % 2}", repaid=kind in (0, 2), refund=kind in (1, 2))
        if kind == 3:
            tree = tree[:3]
        events += tree
        expected[f"tx-{key}"] = {0: "repaid", 1: "refunded", 2: "refunded", 3: "billed"}[kind]
        expected[f"pur-{key}"] = "completed"
    return events, expected


def deliver_on_two_workers(events: list[dict]) -> list[BaseException]:
    halves = [events[0::2], events[1::2]]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def worker(batch):
        try:
            barrier.wait()
            for event in batch:
                inbox_receive(topic_name=TOPIC, body=push_body(event))
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    return errors


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shuffled_concurrent_delivery_ends_in_the_in_order_state(seed):
    events, expected = trees(seed)
    shuffled = events[:]
    random.Random(seed).shuffle(shuffled)

    assert deliver_on_two_workers(shuffled) == []

    states = dict(PaymentEntry.objects.values_list("payment_id", "state"))
    assert states == expected
    rows = InboxEvent.objects.filter(topic=TOPIC)
    assert rows.count() == len(events)
    assert set(rows.values_list("status", flat=True)) == {"processed"}  # none left waiting, none dead
    assert set(rows.values_list("attempts", flat=True)) == {1}  # ordering never costs a second attempt


def test_parent_and_children_racing_never_leave_a_child_waiting():
    # Each parent races its own child on the other worker, many times over.
    events = []
    for n in range(60):
        purchase, card, *_ = card_tree(f"race-{n}", customer_id="c-race", repaid=False)
        events += [card, purchase]  # worker 0 gets children, worker 1 their parents, at the same moment
    assert deliver_on_two_workers(events) == []
    assert not InboxEvent.objects.filter(topic=TOPIC, status="waiting").exists()
    assert PaymentEntry.objects.filter(type="mercard.transaction", state="authorized").count() == 60
