"""One bad bill never stops settlement (issue 16, point 5): the others settle, the sweeper keeps working,
grant retries run, and a bill that can never settle is set aside as dead, visible and retried in the admin."""

from datetime import UTC, datetime

import pytest
from django.db import OperationalError

from campaigns.models import Bill, BillLine, CampaignReward, PointsGrant, PointsLedgerEntry
from campaigns.services import bills_record_many, bills_settle, month_settle
from campaigns.tasks import settle_sweep
from campaigns.tests.factories import bill_event, line

pytestmark = pytest.mark.django_db

BIGINT_MAX = 2**63 - 1


@pytest.fixture
def good_bills(customer):
    """11 unrelated bills (one per customer) pushed together with the bad ones."""
    events = []
    for n in range(11):
        customer(f"g-{n}", stage=10)
        events.append(bill_event(f"g-{n}", [line(f"pg-{n}", 3000)]))  # 1.0% -> 30 points each
    return events


def _bill_overflowing_bigint(customer) -> int:
    """A bill as stored before validation existed: 30 lines of 9 * 10^18 yen at 4% whose grant exceeds bigint."""
    customer("c-huge", stage=40)
    bill = Bill.objects.create(bill_id="b-huge", customer_id="c-huge", billing_month="2026-10",
                               settled_at=datetime(2026, 11, 27, 3, tzinfo=UTC), line_count=30)
    BillLine.objects.bulk_create([
        BillLine(bill=bill, payment_id=f"p-huge-{n}", customer_id="c-huge", amount=9 * 10**18, merchant_id="m-mercari",
                 payment_method="mercard", channel="mercari", paid_at=datetime(2026, 10, 12, 11, tzinfo=UTC))
        for n in range(30)
    ])
    assert 30 * (9 * 10**18 * 40 // 1000) > BIGINT_MAX
    return bill.pk


def test_amounts_overflowing_int_and_a_payment_rewarded_on_another_bill_no_longer_stop_the_sweep(
        campaigns, customer, good_bills, settings):
    settings.CAMPAIGNS_SWEEP_AFTER_SECONDS = 0
    # given: a payment already rewarded on an earlier bill, whose grant is still due
    customer("c-1", stage=10)
    customer("c-2", stage=10)
    earlier = bills_record_many(events=[bill_event("c-1", [line("p-dup", 5000)])], enqueue=False)
    bills_settle(bill_ids=earlier)
    # and, pushed together with 11 good bills: 3 lines of 10^12 yen (rewards beyond int), and a second bill
    # carrying the already rewarded payment
    huge = bill_event("c-2", [line(f"p-big-{n}", 10**12) for n in range(3)])
    again = bill_event("c-1", [line("p-dup", 5000), line("p-new", 1000)])
    bills_record_many(events=[*good_bills[:5], huge, again, *good_bills[5:]], enqueue=False)
    # when
    result = settle_sweep()
    # then: every bill settled, the sweep did not raise, and the due grants went out
    assert set(Bill.objects.values_list("status", flat=True)) == {"settled"}
    assert result["settled"]["bills"] == 13 and result["settled"]["bills_dead"] == 0
    assert result["grants"]["sent"] == 1 + 11 + 2
    # the large bill is rewarded in full: 3 x 10^10 points
    assert PointsGrant.objects.get(bill__bill_id=huge["bill_id"]).points == 3 * 10**10
    assert PointsLedgerEntry.objects.get(customer_id="c-2").points == 3 * 10**10
    # the payment keeps its reward on the bill that settled first; the second bill gets only its new line
    rewards = dict(CampaignReward.objects.filter(customer_id="c-1").values_list("payment_id", "bill__bill_id"))
    assert rewards == {"p-dup": Bill.objects.get(pk=earlier[0]).bill_id, "p-new": again["bill_id"]}
    assert result["settled"]["lines_duplicate_payment"] == 1
    assert PointsGrant.objects.get(bill__bill_id=again["bill_id"]).points == 10


def test_a_payment_on_two_new_bills_of_one_batch_is_rewarded_once_on_the_first(campaigns, customer):
    customer("c-1", stage=10)
    customer("c-2", stage=10)
    first, second = bills_record_many(events=[bill_event("c-2", [line("p-1", 3000)]),
                                              bill_event("c-1", [line("p-1", 3000), line("p-2", 1000)])],
                                      enqueue=False)
    report, _ = bills_settle(bill_ids=[first, second])
    assert dict(CampaignReward.objects.values_list("payment_id", "bill_id")) == {"p-1": first, "p-2": second}
    assert (report.lines_duplicate_payment, report.bills_dead) == (1, 0)
    assert set(Bill.objects.values_list("status", flat=True)) == {"settled"}


def test_a_bill_that_can_never_settle_is_set_aside_and_the_others_settle(campaigns, customer, good_bills,
                                                                       settings):
    settings.CAMPAIGNS_SWEEP_AFTER_SECONDS = 0
    dead_pk = _bill_overflowing_bigint(customer)
    good = bills_record_many(events=good_bills, enqueue=False)
    # when: the sweeper runs, twice
    result = settle_sweep()
    again = settle_sweep()
    # then: the bad bill is set aside with the database's reason, once, and counted
    dead = Bill.objects.get(pk=dead_pk)
    assert dead.status == "dead" and dead.settle_failures == 1 and dead.dead_at is not None
    assert "out of range" in dead.dead_reason and "bigint" in dead.dead_reason
    assert result["settled"]["bills_dead"] == 1
    assert result["settled"]["dead"] == [{"bill_id": "b-huge", "reason": dead.dead_reason}]
    assert again["settled"]["bills"] == 0  # a dead bill is not retried by the sweeper
    # every other bill settled and was granted
    assert Bill.objects.filter(pk__in=good, status="settled").count() == 11
    assert result["grants"]["sent"] == 11 and PointsLedgerEntry.objects.count() == 11
    assert not CampaignReward.objects.filter(bill_id=dead_pk).exists()
    assert not PointsGrant.objects.filter(bill_id=dead_pk).exists()


def test_settle_sweep_delivers_due_grants_even_when_its_bill_step_fails(campaigns, customer, record_bill,
                                                                        monkeypatch):
    # given: a grant due for delivery
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    # when: the bill step fails for a reason that is no bill's (the database went away mid-run)
    def settle_fails(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr("campaigns.services.pending_bills_settle", settle_fails)
    with pytest.raises(OperationalError):
        settle_sweep()
    # then: the grant went out all the same, and the failure was not swallowed
    assert PointsGrant.objects.get().status == "sent"
    assert PointsLedgerEntry.objects.get().points == 30


def test_a_month_rerun_sets_a_bad_bill_aside_and_reports_it(campaigns, customer, good_bills):
    dead_pk = _bill_overflowing_bigint(customer)
    bills_record_many(events=good_bills, enqueue=False)
    report = month_settle(month="2026-10")
    assert (report.bills, report.bills_dead) == (12, 1)
    assert report.lines_rewarded == 11
    assert Bill.objects.get(pk=dead_pk).status == "dead"


def test_dead_bills_are_listed_in_the_admin_and_settle_after_a_fix(operator, campaigns, customer, good_bills):
    dead_pk = _bill_overflowing_bigint(customer)
    bills_record_many(events=good_bills, enqueue=False)
    month_settle(month="2026-10")
    # the admin lists the bill under its status filter, with the reason
    page = operator.get("/admin/campaigns/bill/", {"status__exact": "dead"}).content.decode()
    assert "b-huge" in page and "out of range" in page and "g-0" not in page
    # retried before a fix: still dead, and the operator is told why
    response = operator.post("/admin/campaigns/bill/", {"action": "retry_settlement", "_selected_action": [dead_pk]},
                             follow=True)
    assert "1 still cannot settle" in response.content.decode()
    assert Bill.objects.get(pk=dead_pk).settle_failures == 2
    # fixed (the amounts corrected), then retried: settled and granted
    BillLine.objects.filter(bill_id=dead_pk).update(amount=1000)
    response = operator.post("/admin/campaigns/bill/", {"action": "retry_settlement", "_selected_action": [dead_pk]},
                             follow=True)
    assert "1 settled" in response.content.decode()
    bill = Bill.objects.get(pk=dead_pk)
    assert (bill.status, bill.dead_reason) == ("settled", "")
    assert PointsGrant.objects.get(bill_id=dead_pk).points == 30 * 40  # 30 lines of 1,000 yen at 4%
