"""Settlement and delivery in batches: mixed batches stay exact, and the statements per batch do not grow with it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from campaigns.models import Bill, CampaignBudget, CampaignReward, CustomerNotification, PointsGrant
from campaigns.services import bills_settle, grants_deliver, grants_deliver_all
from campaigns.tests.factories import bill_event, line

pytestmark = pytest.mark.django_db


def _bills(customer, record_bill, count: int, prefix: str) -> list[int]:
    """`count` bills of distinct customers, each with a marketplace line, an outside line and an unknown merchant."""
    ids = []
    for n in range(count):
        customer_id = customer(f"{prefix}-{n}", stage=20)
        ids.append(record_bill(bill_event(customer_id, [
            line(f"{prefix}-{n}-a", 3000), line(f"{prefix}-{n}-b", 4000, "m-77", channel="outside"),
            line(f"{prefix}-{n}-c", 500, "m-nobody", channel="outside"),
        ])))
    return ids


def test_a_batch_mixing_a_rerun_bill_and_new_bills_grants_only_the_new_ones(campaigns, customer, record_bill):
    # given a bill settled once
    customer("c-1", stage=20)
    old = record_bill(bill_event("c-1", [line("p-1", 3000), line("p-2", 4000, "m-77", channel="outside")]))
    bills_settle(bill_ids=[old])
    # when it settles again in one batch with a new bill of the same customer and one of another customer
    customer("c-2", stage=10)
    new_same = record_bill(bill_event("c-1", [line("p-3", 10_000, "m-77", channel="outside")]))
    new_other = record_bill(bill_event("c-2", [line("p-4", 1000)]))
    report, grant_ids = bills_settle(bill_ids=[old, new_same, new_other])
    # then only the new bills gain rewards and a first-pass grant each
    assert report.lines_rewarded == 2 and report.grants == 2
    assert sorted(PointsGrant.objects.filter(pk__in=grant_ids).values_list("idempotency_key", "points")) == sorted([
        (f"mops-bill-{Bill.objects.get(pk=new_same).bill_id}-1", 50),
        (f"mops-bill-{Bill.objects.get(pk=new_other).bill_id}-1", 10),
    ])
    assert CampaignReward.objects.filter(bill_id=old).count() == 2
    assert CampaignBudget.objects.get(customer_id="c-1").points == 20 + 50


def test_two_bills_of_one_customer_in_one_batch_share_the_cap(campaigns, customer, record_bill):
    _, outer = campaigns  # 0.5%, cap 1000 points
    customer("c-1", stage=10)
    first = record_bill(bill_event("c-1", [line("p-1", 160_000, "m-77", channel="outside",
                                                 paid_at="2026-10-01T00:00:00Z")]))
    second = record_bill(bill_event("c-1", [line("p-2", 160_000, "m-77", channel="outside",
                                                  paid_at="2026-10-02T00:00:00Z")]))
    bills_settle(bill_ids=[first, second])
    assert dict(CampaignReward.objects.values_list("payment_id", "points")) == {"p-1": 800, "p-2": 200}
    assert CampaignBudget.objects.get(campaign=outer, customer_id="c-1").points == 1000
    assert sorted(PointsGrant.objects.values_list("points", flat=True)) == [200, 800]


def test_settling_a_batch_costs_the_same_statements_for_2_or_20_bills(campaigns, customer, record_bill):
    small = _bills(customer, record_bill, 2, "s")
    large = _bills(customer, record_bill, 20, "l")
    with CaptureQueriesContext(connection) as two:
        bills_settle(bill_ids=small)
    with CaptureQueriesContext(connection) as twenty:
        report, _ = bills_settle(bill_ids=large)
    assert report.lines == 60 and report.grants == 20 and report.lines_unknown_merchant == 20
    assert len(twenty.captured_queries) == len(two.captured_queries)
    assert Bill.objects.filter(pk__in=large, status="settled", unmatched_lines=1).count() == 20


def test_delivering_costs_the_same_statements_for_2_or_20_grants(campaigns, customer, record_bill):
    _, small = bills_settle(bill_ids=_bills(customer, record_bill, 2, "s"))
    _, large = bills_settle(bill_ids=_bills(customer, record_bill, 20, "l"))
    with CaptureQueriesContext(connection) as two:
        assert grants_deliver(grant_ids=small)["sent"] == 2
    with CaptureQueriesContext(connection) as twenty:
        assert grants_deliver(grant_ids=large)["sent"] == 20
    assert len(twenty.captured_queries) == len(two.captured_queries)


def test_one_delivery_reaches_linked_customers_through_line_and_the_others_by_a_recorded_notice(
        campaigns, customer, record_bill):
    line_models = pytest.importorskip("line_integration.models")
    line_models.LineUser.objects.create(line_user_id="U" + "a" * 32, customer_id="c-linked", status="linked")
    line_models.LineUser.objects.create(line_user_id="U" + "b" * 32, customer_id="c-blocked", status="blocked")
    for customer_id in ("c-linked", "c-blocked", "c-plain"):
        customer(customer_id, stage=10)
        bills_settle(bill_ids=[record_bill(bill_event(customer_id, [line(f"p-{customer_id}", 3000)]))])
    counts = grants_deliver_all()
    assert (counts["sent"], counts["line"], counts["recorded"]) == (3, 1, 2)
    assert dict(PointsGrant.objects.values_list("customer_id", "notified_via")) == {
        "c-linked": "line", "c-blocked": "recorded", "c-plain": "recorded"}
    assert set(PointsGrant.objects.values_list("status", "attempts")) == {("sent", 1)}
    assert sorted(CustomerNotification.objects.values_list("customer_id", flat=True)) == ["c-blocked", "c-plain"]
    assert line_models.OutboundMessage.objects.filter(user_id="c-linked").count() == 1


def test_payment_times_decide_the_campaign_period_whatever_their_offset(campaigns, customer, record_bill):
    # the campaigns run over [2026-10-01T00:00Z, 2026-11-01T00:00Z)
    customer("c-1", stage=10)
    bill = record_bill(bill_event("c-1", [
        line("before", 1000, paid_at="2026-10-01T08:30:00+09:00"),   # 2026-09-30T23:30Z
        line("first", 1000, paid_at="2026-10-01T09:00:00+09:00"),    # 2026-10-01T00:00Z
        line("last", 1000, paid_at="2026-10-31T23:59:59Z"),
        line("after", 1000, paid_at="2026-10-31T20:00:00-04:00"),    # 2026-11-01T00:00Z
    ]))
    report, _ = bills_settle(bill_ids=[bill])
    assert sorted(CampaignReward.objects.values_list("payment_id", flat=True)) == ["first", "last"]
    assert report.lines_no_campaign == 2
