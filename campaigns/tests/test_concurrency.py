"""The cap holds when two bills of one customer settle at the same moment on two workers."""

import threading
import time

import pytest
from django.db import connection, transaction

from campaigns.models import Bill, CampaignBudget, CampaignReward
from campaigns.services import bills_settle
from campaigns.services.settlement_sql import BUDGETS_LOCK
from campaigns.tests.factories import bill_event, line

pytestmark = pytest.mark.django_db(transaction=True)
WAIT = 30  # seconds: an upper bound for a thread to reach a point, never a duration anything depends on


def _in_thread(target, errors):
    def run():
        try:
            target()
        except Exception as exc:  # surfaced in the main thread
            errors.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def _blocked_statement(*, waiting: int, holder: int) -> str | None:
    """What backend `waiting` runs while it waits for a lock `holder` holds, polled until it does (None if never)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s AND %s = ANY(pg_blocking_pids(pid))",
                           [waiting, holder])
            row = cursor.fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.01)  # the next poll; what is awaited is the lock wait, not the time
    return None


def _join(threads) -> None:
    for thread in threads:
        thread.join(WAIT)
    assert not any(thread.is_alive() for thread in threads)


def test_second_bill_waits_for_the_first_and_sees_its_points(campaigns, customer, record_bill):
    _, outer = campaigns  # 0.5%, cap 1000 points
    customer("c-1", stage=10)
    # an earlier bill, so the budget row already exists when both workers start
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-0", 20_000, "m-77", channel="outside")]))])
    first = record_bill(bill_event("c-1", [line("p-1", 160_000, "m-77", channel="outside")]))   # 800 points
    second = record_bill(bill_event("c-1", [line("p-2", 160_000, "m-77", channel="outside")]))  # 800 uncapped
    pids: dict[str, int] = {}
    first_settled, second_starts, first_may_commit, errors = threading.Event(), threading.Event(), threading.Event(), []

    def worker_a():
        with transaction.atomic():
            bills_settle(bill_ids=[first])
            pids["a"] = _backend_pid()
            first_settled.set()
            # still holding the budget row lock until worker B is seen waiting for it
            assert first_may_commit.wait(WAIT)

    def worker_b():
        assert first_settled.wait(WAIT)
        pids["b"] = _backend_pid()
        second_starts.set()
        bills_settle(bill_ids=[second])

    threads = [_in_thread(worker_a, errors), _in_thread(worker_b, errors)]
    for thread in threads:
        thread.start()
    try:
        assert second_starts.wait(WAIT), errors
        blocked = _blocked_statement(waiting=pids["b"], holder=pids["a"])
    finally:
        first_may_commit.set()
        _join(threads)
    assert not errors, errors
    # B queued on the budget row A had locked (it did not read the points before A committed)
    assert blocked is not None and blocked.startswith(BUDGETS_LOCK.split("%s")[0]), blocked
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
        barrier.wait(WAIT)
        bills_settle(bill_ids=[bill_id])

    threads = [_in_thread(lambda b=b: settle(b), errors) for b in bills]
    for thread in threads:
        thread.start()
    _join(threads)
    assert not errors, errors
    for c in customers:
        rewards = CampaignReward.objects.filter(campaign=outer, customer_id=c)
        assert sum(r.points for r in rewards) == 1000
        assert sorted(r.points for r in rewards) == [100, 450, 450]
