"""Two workers at the same moment: the cap holds when two bills of one customer settle, and grants
delivered against a partly failing points service go out once each."""

import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from campaigns.models import Bill, CampaignBudget, CampaignReward, PointsGrant
from campaigns.services import bills_record_many, bills_settle, grants_deliver_all
from campaigns.services.settlement_sql import BUDGETS_LOCK
from campaigns.tests.factories import bill_event, line
from campaigns.tests.points_server import PointsServer

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


def test_two_workers_delivering_at_once_against_a_partly_failing_service_send_each_grant_once(
        campaigns, customer, settings):
    events = [bill_event(customer(f"c-{n}", stage=10), [line(f"p-{n}", 3000)]) for n in range(60)]
    bills_settle(bill_ids=bills_record_many(events=events, enqueue=False))
    keys = list(PointsGrant.objects.values_list("idempotency_key", flat=True))
    with PointsServer(fail_percent=5, seed=3) as server:
        settings.POINTS_API_URL = server.url
        settings.POINTS_API_TIMEOUT_SECONDS = 5
        now = timezone.now() + timedelta(seconds=1)
        barrier, errors = threading.Barrier(2), []

        def work():
            barrier.wait(WAIT)
            grants_deliver_all(limit_per_batch=10, now=now)

        threads = [_in_thread(work, errors) for _ in range(2)]
        for thread in threads:
            thread.start()
        _join(threads)
        assert not errors, errors
        # the sweeps that follow (10 s apart, on the injected clock) deliver what was refused or left
        for sweep in range(1, 30):
            if not PointsGrant.objects.filter(status="pending").exists():
                break
            grants_deliver_all(now=now + timedelta(seconds=10 * sweep))
    assert set(PointsGrant.objects.values_list("status", flat=True)) == {"sent"}
    assert sorted(server.granted) == sorted(keys)
    # no grant was sent by both workers: each key asked once, plus once per refusal
    asked = Counter(key for key, _ in server.requests)
    assert {key: asked[key] for key in keys} == {key: server.refused[key] + 1 for key in keys}
