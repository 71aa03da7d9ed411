"""The cap holds when two bills of one customer settle at the same moment on two workers (PostgreSQL)."""

import threading
import time

import pytest
from django.db import connection, transaction

from campaigns.models import Bill, CampaignBudget, CampaignReward
from campaigns.services import bills_settle
from campaigns.tests.factories import bill_event, line

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks and real concurrency"),
    pytest.mark.django_db(transaction=True),
]


def _in_thread(target, errors):
    def run():
        try:
            target()
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def test_second_bill_waits_for_the_first_and_sees_its_points(campaigns, customer, record_bill):
    _, outer = campaigns  # 0.5%, cap 1000 points
    customer("c-1", stage=10)
    # an earlier bill, so the budget row already exists when both workers start
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-0", 20_000, "m-77", channel="outside")]))])
    first = record_bill(bill_event("c-1", [line("p-1", 160_000, "m-77", channel="outside")]))   # 800 points
    second = record_bill(bill_event("c-1", [line("p-2", 160_000, "m-77", channel="outside")]))  # 800 uncapped
    first_done, errors = threading.Event(), []

    def worker_a():
        with transaction.atomic():
            bills_settle(bill_ids=[first])
            first_done.set()
            time.sleep(0.8)  # still holding the budget row lock: worker B must wait, not read 0

    def worker_b():
        first_done.wait(5)
        bills_settle(bill_ids=[second])

    threads = [_in_thread(worker_a, errors), _in_thread(worker_b, errors)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not errors, errors
    assert time.monotonic() - started >= 0.8
    assert dict(CampaignReward.objects.values_list("payment_id", "points")) == {"p-0": 100, "p-1": 800, "p-2": 100}
    assert CampaignBudget.objects.get(campaign=outer, customer_id="c-1").points == 1000
    assert set(Bill.objects.values_list("status", flat=True)) == {"settled"}


def test_many_simultaneous_bills_never_exceed_the_cap(campaigns, customer, record_bill):
    _, outer = campaigns
    customers = [customer(f"c-{n}", stage=10) for n in range(4)]
    bills = [record_bill(bill_event(c, [line(f"p-{c}-{k}", 90_000, "m-77", channel="outside")]))
             for c in customers for k in range(3)]  # 3 x 450 points per customer against a cap of 1000
    barrier, errors = threading.Barrier(len(bills)), []

    def settle(bill_id):
        barrier.wait(10)
        bills_settle(bill_ids=[bill_id])

    threads = [_in_thread(lambda b=b: settle(b), errors) for b in bills]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    for c in customers:
        rewards = CampaignReward.objects.filter(campaign=outer, customer_id=c)
        assert sum(r.points for r in rewards) == 1000
        assert sorted(r.points for r in rewards) == [100, 450, 450]
