"""Settlement: rewards, caps, unknown merchants, idempotency, dry run, versions, grants, notifications."""

from io import StringIO

import pytest
from django.core.management import call_command

from campaigns.models import (
    Bill,
    CampaignBudget,
    CampaignReward,
    CustomerNotification,
    PointsGrant,
    PointsLedgerEntry,
)
from campaigns.services import bills_settle, campaign_update, grants_deliver_all, month_settle
from campaigns.tasks import settle_bills_task, settle_sweep
from campaigns.tests.factories import bill_event, line

pytestmark = pytest.mark.django_db


def _points(campaign) -> int:
    return sum(CampaignReward.objects.filter(campaign=campaign).values_list("points", flat=True))


def test_bill_lines_become_rewards_per_campaign(campaigns, customer, record_bill):
    inner, outer = campaigns
    customer("c-1", stage=30)
    bill = record_bill(bill_event("c-1", [
        line("p-1", 3000),                                                         # marketplace 3.0% -> 90
        line("p-2", 2000, "m-mercari-ap", method="apple_pay", channel="outside"),  # marketplace via master -> 60
        line("p-3", 5000, "m-77", channel="outside"),                              # outside 0.5% -> 25
        line("p-4", 5000, "m-88", channel="outside"),                              # excluded shop
        line("p-5", 5000, "m-charge", method="e_money_charge", channel="outside"),  # excluded category
        line("p-6", 5000, "m-77", channel="outside", paid_at="2026-11-02T00:00:00Z"),  # after the campaign
    ]))
    report, grant_ids = bills_settle(bill_ids=[bill])
    rewards = {r.payment_id: (r.campaign_id, r.points, str(r.rate), r.stage, r.campaign_version)
               for r in CampaignReward.objects.all()}
    assert rewards == {"p-1": (inner.pk, 90, "3.0", 30, 1), "p-2": (inner.pk, 60, "3.0", 30, 1),
                       "p-3": (outer.pk, 25, "0.5", 30, 1)}
    assert (report.lines, report.lines_rewarded, report.lines_no_campaign) == (6, 3, 3)
    grant = PointsGrant.objects.get(pk__in=grant_ids)
    key = f"mops-bill-{Bill.objects.get().bill_id}-1"
    assert (grant.points, grant.status, grant.idempotency_key) == (175, "pending", key)
    assert Bill.objects.get().status == "settled"


def test_a_card_holder_without_marketplace_activity_is_settled_at_the_lowest_stage(campaigns, record_bill):
    from campaigns.services import card_status_record_many
    from loyalty.tests.factories import publish_rules

    inner, _ = campaigns
    publish_rules()
    card_status_record_many(events=[{"event_id": "cs-new", "customer_id": "c-new", "mercard_status": 2,
                                     "changed_at": "2026-09-01T00:00:00Z"}])
    bill = record_bill(bill_event("c-new", [line("p-1", 3000)]))
    unknown = record_bill(bill_event("c-nobody", [line("p-2", 3000)]))  # neither a card nor any activity

    report, _ = bills_settle(bill_ids=[bill, unknown])

    assert {r.payment_id: (r.campaign_id, r.points, r.stage) for r in CampaignReward.objects.all()} == {
        "p-1": (inner.pk, 30, 10)}
    assert report.lines_unknown_customer == 1


def test_unknown_merchant_is_settled_without_match_and_counted(campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bill = record_bill(bill_event("c-1", [line("p-1", 3000, "m-nobody", channel="outside"), line("p-2", 1000)]))
    report, _ = bills_settle(bill_ids=[bill])
    assert report.lines_unknown_merchant == 1
    assert list(CampaignReward.objects.values_list("payment_id", flat=True)) == ["p-2"]
    bill_row = Bill.objects.get()
    assert (bill_row.status, bill_row.unmatched_lines) == ("settled", 1)


def test_cap_holds_within_and_across_bills_taking_earlier_grants_into_account(campaigns, customer, record_bill):
    _, outer = campaigns  # 0.5%, cap 1000 points
    customer("c-1", stage=10)
    first = record_bill(bill_event("c-1", [line("p-1", 120_000, "m-77", channel="outside",
                                                 paid_at="2026-10-01T00:00:00Z"),
                                            line("p-2", 100_000, "m-77", channel="outside",
                                                 paid_at="2026-10-02T00:00:00Z")]))
    bills_settle(bill_ids=[first])
    assert dict(CampaignReward.objects.values_list("payment_id", "points")) == {"p-1": 600, "p-2": 400}
    assert CampaignReward.objects.get(payment_id="p-2").capped
    second = record_bill(bill_event("c-1", [line("p-3", 50_000, "m-77", channel="outside")]))
    report, grants = bills_settle(bill_ids=[second])
    reward = CampaignReward.objects.get(payment_id="p-3")
    assert (reward.points, reward.capped) == (0, True)
    assert grants == [] and report.campaigns[outer.pk].capped == 1
    assert _points(outer) == 1000 == CampaignBudget.objects.get(campaign=outer, customer_id="c-1").points


def test_rerun_of_a_bill_or_a_month_grants_nothing_twice(campaigns, customer, record_bill):
    customer("c-1", stage=20)
    bill = record_bill(bill_event("c-1", [line("p-1", 3000), line("p-2", 4000, "m-77", channel="outside")]))
    bills_settle(bill_ids=[bill])
    grants_deliver_all()
    before = list(CampaignReward.objects.values_list("pk", "points"))
    again, grant_ids = bills_settle(bill_ids=[bill])
    month = month_settle(month="2026-10")
    assert grant_ids == [] and again.lines_rewarded == 0 and month.lines_rewarded == 0
    assert list(CampaignReward.objects.values_list("pk", "points")) == before
    grants_deliver_all()
    assert PointsGrant.objects.count() == 1 and PointsLedgerEntry.objects.get().points == 80


def test_rerun_after_a_fix_adds_only_the_missing_rewards_in_a_new_grant(campaigns, customer, record_bill):
    from campaigns.services import merchant_master_import_csv

    customer("c-1", stage=20)
    bill = record_bill(bill_event("c-1", [line("p-1", 3000), line("p-2", 4000, "m-new", channel="outside")]))
    bills_settle(bill_ids=[bill])
    merchant_master_import_csv(text="merchant_id,master_id\nm-new,shop-new\n")
    report, grant_ids = bills_settle(bill_ids=[bill])
    assert report.lines_rewarded == 1
    assert sorted(PointsGrant.objects.values_list("idempotency_key", "points")) == [
        (f"mops-bill-{Bill.objects.get().bill_id}-1", 60), (f"mops-bill-{Bill.objects.get().bill_id}-2", 20)]


def test_rewards_record_the_campaign_version_they_used(campaigns, customer, record_bill):
    inner, _ = campaigns
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    campaign_update(campaign_id=inner.pk, rates=[(10, 49, "2.0")], by="marketer")
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-2", 3000)]))])
    assert dict(CampaignReward.objects.values_list("payment_id", "campaign_version")) == {"p-1": 1, "p-2": 2}
    assert dict(CampaignReward.objects.values_list("payment_id", "points")) == {"p-1": 30, "p-2": 60}


def test_unknown_customer_lines_are_counted(campaigns, record_bill):
    report, _ = bills_settle(bill_ids=[record_bill(bill_event("ghost", [line("p-1", 3000)]))])
    assert report.lines_unknown_customer == 1 and not CampaignReward.objects.exists()


def test_grants_go_to_the_ledger_once_and_the_customer_is_notified(campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    assert grants_deliver_all()["sent"] == 1
    assert grants_deliver_all()["sent"] == 0
    entry = PointsLedgerEntry.objects.get()
    assert (entry.customer_id, entry.points) == ("c-1", 30)
    note = CustomerNotification.objects.get()
    assert note.customer_id == "c-1" and "30 ポイント" in note.text  # customers read Japanese
    assert PointsGrant.objects.get().notified_via == "recorded"


def test_linked_customer_is_notified_through_line(campaigns, customer, record_bill):
    line_models = pytest.importorskip("line_integration.models")
    line_models.LineUser.objects.create(line_user_id="U" + "a" * 32, customer_id="c-9", status="linked")
    customer("c-9", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-9", [line("p-1", 3000)]))])
    counts = grants_deliver_all()
    assert counts["line"] == 1 and not CustomerNotification.objects.exists()
    assert PointsGrant.objects.get().notified_via == "line"


def test_dry_run_writes_nothing_and_prints_totals_per_campaign(campaigns, customer, record_bill):
    inner, outer = campaigns
    customer("c-1", stage=40)
    record_bill(bill_event("c-1", [line("p-1", 3000), line("p-2", 1000, "m-77", channel="outside"),
                                   line("p-3", 1000, "m-zzz", channel="outside")]))
    out = StringIO()
    call_command("settle", "--month", "2026-10", "--dry-run", "--no-progress", stdout=out)
    text = out.getvalue()
    assert "DRY RUN" in text
    assert f"campaign {inner.pk} 'Marketplace purchases': 1 rewards, 120 points" in text
    assert f"campaign {outer.pk} 'Outside the marketplace': 1 rewards, 5 points" in text
    assert "unknown merchant 1" in text
    assert not CampaignReward.objects.exists() and not PointsGrant.objects.exists()
    assert not CampaignBudget.objects.exists() and Bill.objects.get().status == "pending"


def test_dry_run_cap_holds_across_batches(campaigns, customer, record_bill):
    _, outer = campaigns
    customer("c-1", stage=10)
    for n in range(3):
        record_bill(bill_event("c-1", [line(f"p-{n}", 100_000, "m-77", channel="outside")]))
    report = month_settle(month="2026-10", dry_run=True, batch=1)
    assert (report.campaigns[outer.pk].points, report.campaigns[outer.pk].capped) == (1000, 1)  # 500 + 500 + 0


def test_settle_command_settles_and_delivers(campaigns, customer, record_bill):
    customer("c-1", stage=10)
    record_bill(bill_event("c-1", [line("p-1", 3000)]))
    out = StringIO()
    call_command("settle", "--month", "2026-10", "--no-progress", stdout=out)
    assert "1 rewards, 30 points" in out.getvalue()
    assert PointsLedgerEntry.objects.get().points == 30


def test_bad_month_is_refused():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("settle", "--month", "2026-13")


def test_task_and_sweeper_settle_pending_bills(campaigns, customer, record_bill, settings):
    settings.CAMPAIGNS_SWEEP_AFTER_SECONDS = 0
    customer("c-1", stage=10)
    first = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    settle_bills_task(bill_ids=[first])
    assert Bill.objects.get(pk=first).status == "settled"
    record_bill(bill_event("c-1", [line("p-2", 2000)]))  # its on_commit task was lost
    result = settle_sweep()
    assert result["settled"]["lines_rewarded"] == 1
    assert result["grants"]["sent"] == 2
    assert sorted(PointsLedgerEntry.objects.values_list("points", flat=True)) == [20, 30]
