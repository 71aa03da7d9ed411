"""Marketers' admin: validation messages, versioning, CSV exports, merchant import, backtest, provisions."""

from datetime import UTC, datetime

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import (
    Campaign,
    CampaignBacktest,
    CampaignReward,
    CampaignVersion,
    MerchantAlias,
    ProvisionJournal,
)
from campaigns.services import bills_settle, grants_deliver_all, provision_journal_compute
from campaigns.tests.conftest import BACKTEST_DRAFT_RESULT
from campaigns.tests.factories import bill_event, line
from mercari_ops.common.approvals import change_request_approve
from mercari_ops.common.business_time import business_date, business_month_label
from mercari_ops.common.models import ChangeRequest

pytestmark = pytest.mark.django_db
ADD = "/admin/campaigns/campaign/add/"


@pytest.fixture
def marketer(client):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("mika", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="marketers"))
    client.force_login(user)
    return client


def _approver():
    from mercari_ops.common.approvals import APPROVERS, approver_group_sync

    approver_group_sync()
    user = get_user_model().objects.create_user("anna", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name=APPROVERS))
    return user


def _form(**overrides):
    data = {
        "name": "Autumn", "status": "draft", "starts_at_0": "2026-10-01", "starts_at_1": "00:00:00",
        "ends_at_0": "2026-11-01", "ends_at_1": "00:00:00", "upper_limit": "", "user_filters": "{}",
        "payment_filters": '{"mercari_inner_payment": true}',
        "rates-TOTAL_FORMS": "2", "rates-INITIAL_FORMS": "0", "rates-MIN_NUM_FORMS": "0",
        "rates-MAX_NUM_FORMS": "1000",
        "rates-0-stage_from": "10", "rates-0-stage_to": "20", "rates-0-rate": "1.0",
        "rates-1-stage_from": "30", "rates-1-stage_to": "40", "rates-1-rate": "2.0",
        "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0", "versions-MIN_NUM_FORMS": "0",
        "versions-MAX_NUM_FORMS": "1000",
    }
    data.update(overrides)
    return data


def test_marketer_creates_a_campaign(marketer):
    response = marketer.post(ADD, _form())
    assert response.status_code == 302, response.content.decode()[:3000]
    campaign = Campaign.objects.get()
    assert [(r.stage_from, r.stage_to, str(r.rate)) for r in campaign.rates.all()] == [(10, 20, "1.0"),
                                                                                       (30, 40, "2.0")]


def test_the_period_is_entered_and_shown_in_japan_time(marketer):
    # given a campaign entered as 1 December 00:00 to 1 January 00:00 (Japan time, the admin's)
    response = marketer.post(ADD, _form(starts_at_0="2026-12-01", ends_at_0="2027-01-01"))
    assert response.status_code == 302, response.content.decode()[:3000]

    campaign = Campaign.objects.get()
    # then it is stored as the instants 2026-11-30T15:00:00Z and 2026-12-31T15:00:00Z
    assert (campaign.starts_at, campaign.ends_at) == (datetime(2026, 11, 30, 15, tzinfo=UTC),
                                                      datetime(2026, 12, 31, 15, tzinfo=UTC))
    # and the change page shows the local wall time again
    page = marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/").content.decode()
    assert 'value="2026-12-01"' in page and 'value="00:00:00"' in page


@pytest.mark.parametrize("overrides, message", [
    ({"rates-1-stage_from": "15"}, "stage ranges 10-20 and 15-40 overlap"),
    ({"user_filters": '{"mercard_statuz": [2]}'}, "unknown key user_filters.mercard_statuz"),
    ({"payment_filters": '{"merchant": {"shop_idz": ["a"]}}'}, "unknown key payment_filters.merchant.shop_idz"),
    ({"ends_at_0": "2026-09-01"}, "ends_at must be after starts_at"),
    ({"rates-0-rate": "-1.0"}, "greater than or equal to 0"),
    ({"rates-0-rate": "1.25"}, "1 decimal place"),
])
def test_admin_rejects_bad_campaigns_with_a_clear_message(marketer, overrides, message):
    response = marketer.post(ADD, _form(**overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Campaign.objects.exists()


def test_changing_an_active_campaign_is_versioned(marketer, campaigns):
    inner, _ = campaigns
    rates = list(inner.rates.all())
    data = _form(name=inner.name, status="active", payment_filters='{"mercari_inner_payment": true}',
                 user_filters='{"mercard_status": [2, 3]}', **{"rates-TOTAL_FORMS": str(len(rates)),
                                                               "rates-INITIAL_FORMS": str(len(rates))})
    for i, rate in enumerate(rates):
        data.update({f"rates-{i}-id": str(rate.pk), f"rates-{i}-campaign": str(inner.pk),
                     f"rates-{i}-stage_from": str(rate.stage_from), f"rates-{i}-stage_to": str(rate.stage_to),
                     f"rates-{i}-rate": "9.9" if i == 0 else str(rate.rate)})
    data["versions-TOTAL_FORMS"] = data["versions-INITIAL_FORMS"] = str(inner.versions.count())
    for i, version in enumerate(inner.versions.order_by("-version")):
        data[f"versions-{i}-id"] = str(version.pk)
        data[f"versions-{i}-campaign"] = str(inner.pk)
    response = marketer.post(f"/admin/campaigns/campaign/{inner.pk}/change/", data)
    assert response.status_code == 302, response.content.decode()[:3000]
    # four eyes: the live campaign is unchanged until another person approves the change request
    assert not CampaignVersion.objects.filter(campaign=inner, version=2).exists()
    change = ChangeRequest.objects.get(kind="campaign.change", target_id=str(inner.pk))
    assert response["Location"] == f"/admin/common/changerequest/{change.pk}/change/"
    change_request_approve(request_id=change.pk, by=_approver())
    version = CampaignVersion.objects.get(campaign=inner, version=2)
    assert version.changed_by == "mika" and "approved by anna" in version.note
    assert version.before["rates"][0]["rate"] == "1.0" and version.after["rates"][0]["rate"] == "9.9"
    inner.refresh_from_db()
    assert inner.version == 2


def test_activate_action_records_version_one(marketer, merchants):
    marketer.post(ADD, _form())
    campaign = Campaign.objects.get()
    response = marketer.post("/admin/campaigns/campaign/", {"action": "activate", "_selected_action": [campaign.pk]})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "draft"  # four eyes: a change request until an approver approves it
    change_request_approve(request_id=ChangeRequest.objects.get(kind="campaign.activate").pk, by=_approver())
    campaign.refresh_from_db()
    assert campaign.status == "active"
    assert CampaignVersion.objects.get(campaign=campaign).note.startswith("activated (change request #")


def test_rewards_are_read_only_and_export_as_csv(marketer, campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    assert marketer.get("/admin/campaigns/campaignreward/").status_code == 200
    assert marketer.get("/admin/campaigns/campaignreward/add/").status_code == 403
    response = marketer.post("/admin/campaigns/campaignreward/", {
        "action": "export_csv", "_selected_action": list(CampaignReward.objects.values_list("pk", flat=True))})
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0].startswith("campaign_id,campaign_version,customer_id,payment_id")
    assert ",c-1,p-1," in body and ",30," in body


def test_merchant_master_csv_import(marketer):
    upload = SimpleUploadedFile("m.csv", b"merchant_id,payment_method,master_id,is_marketplace\n"
                                         b"m-1,,mercari,1\nm-2,id,mercari,\n")
    response = marketer.post("/admin/campaigns/merchantmaster/import-csv/", {"file": upload})
    assert response.status_code == 302
    assert MerchantAlias.objects.count() == 2
    bad = SimpleUploadedFile("m.csv", b"merchant_id,master,x\nm-1,a,b\n")
    response = marketer.post("/admin/campaigns/merchantmaster/import-csv/", {"file": bad}, follow=True)
    assert "CSV header must contain master_id" in response.content.decode()


def test_backtest_is_queued_and_its_page_shows_progress_then_results(marketer, backtest_draft, eager_celery,
                                                                       django_capture_on_commit_callbacks):
    # when: the marketer asks for a backtest
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = marketer.post(f"/admin/campaigns/campaign/{backtest_draft.pk}/backtest/", {"month": "2026-10"})
    # then: a queued row, a task sent after commit, and a redirect to the run's page
    run = CampaignBacktest.objects.get()
    page_url = f"/admin/campaigns/campaign/{backtest_draft.pk}/backtest/{run.pk}/"
    assert (response.status_code, response["Location"]) == (302, page_url)
    assert (run.status, run.month, run.run_by, len(callbacks)) == ("queued", "2026-10", "mika", 1)
    queued = marketer.get(page_url).content.decode()
    assert "Queued" in queued and "0 / ? bill lines" in queued and 'http-equiv="refresh"' in queued
    assert "Cap hits" not in queued

    # a worker half-way through (it writes its progress on the row)
    CampaignBacktest.objects.filter(pk=run.pk).update(status="running", lines_total=4, lines_done=2)
    running = marketer.get(page_url).content.decode()
    assert "Running" in running and "2 / 4 bill lines (50%)" in running and 'http-equiv="refresh"' in running
    CampaignBacktest.objects.filter(pk=run.pk).update(status="queued", lines_total=None, lines_done=0)

    # when: the worker runs the task
    for callback in callbacks:
        callback()
    # then
    run.refresh_from_db()
    assert (run.status, run.lines_done, run.lines_total, run.result) == ("done", 4, 4, BACKTEST_DRAFT_RESULT)
    done = marketer.get(page_url).content.decode()
    assert "Done" in done and "4 / 4 bill lines (100%)" in done and 'http-equiv="refresh"' not in done
    assert "Cap hits" in done and "<td>1,700 pt</td>" in done  # points written as points (issue 19)
    listing = marketer.get(f"/admin/campaigns/campaign/{backtest_draft.pk}/backtest/").content.decode()
    assert page_url in listing and "Done" in listing
    changelist = marketer.get("/admin/campaigns/campaignbacktest/").content.decode()
    assert "4 / 4 (100%)" in changelist
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "draft"
    assert not CampaignReward.objects.exists()


def test_backtest_with_a_bad_month_queues_nothing(marketer, backtest_draft, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = marketer.post(f"/admin/campaigns/campaign/{backtest_draft.pk}/backtest/", {"month": "2026-13"})
    assert response.status_code == 200
    assert "Month must be YYYY-MM, got &#x27;2026-13&#x27;" in response.content.decode()
    assert callbacks == [] and not CampaignBacktest.objects.exists()


def test_backtest_page_of_another_campaigns_run_is_404(marketer, backtest_draft, campaigns):
    run = CampaignBacktest.objects.create(campaign=backtest_draft, month="2026-10")
    assert marketer.get(f"/admin/campaigns/campaign/{campaigns[0].pk}/backtest/{run.pk}/").status_code == 404


def test_end_action_ends_active_campaigns_and_records_a_version(marketer, campaigns):
    inner, outer = campaigns
    response = marketer.post("/admin/campaigns/campaign/", {"action": "end", "_selected_action": [inner.pk]},
                             follow=True)
    assert "1 campaign(s) ended." in response.content.decode()
    inner.refresh_from_db()
    outer.refresh_from_db()
    assert (inner.status, outer.status) == ("ended", "active")
    version = CampaignVersion.objects.get(campaign=inner, note="ended")
    assert (version.changed_by, version.before["status"], version.after["status"]) == ("mika", "active", "ended")


def test_settle_now_action_settles_pending_bills_once(operator, campaigns, customer, record_bill):
    from campaigns.models import Bill

    # given: a bill whose settlement task has not run
    customer("c-1", stage=20)
    bill_pk = record_bill(bill_event("c-1", [line("p-1", 3000), line("p-2", 500, "m-nobody")]))
    assert Bill.objects.get(pk=bill_pk).status == "pending"
    # when
    response = operator.post("/admin/campaigns/bill/", {"action": "settle_now", "_selected_action": [bill_pk]},
                             follow=True)
    # then
    assert "Settled: " in response.content.decode()
    bill = Bill.objects.get(pk=bill_pk)
    assert (bill.status, bill.unmatched_lines) == ("settled", 1)
    assert list(CampaignReward.objects.values_list("payment_id", "points")) == [("p-1", 60)]
    # again: idempotent, nothing written twice
    operator.post("/admin/campaigns/bill/", {"action": "settle_now", "_selected_action": [bill_pk]})
    assert CampaignReward.objects.count() == 1


def test_deliver_now_action_grants_pending_points(operator, campaigns, customer, record_bill):
    from campaigns.models import PointsGrant, PointsLedgerEntry

    # given: a settled bill whose points grant was not delivered yet
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    grant = PointsGrant.objects.get()
    assert (grant.status, grant.points) == ("pending", 30)
    # when
    response = operator.post("/admin/campaigns/pointsgrant/", {"action": "deliver_now",
                                                               "_selected_action": [grant.pk]}, follow=True)
    # then: granted through the in-project ledger, once
    assert "Delivery: {&#x27;sent&#x27;: 1" in response.content.decode()
    grant.refresh_from_db()
    assert grant.status == "sent" and grant.sent_at is not None
    assert list(PointsLedgerEntry.objects.values_list("customer_id", "points")) == [("c-1", 30)]
    operator.post("/admin/campaigns/pointsgrant/", {"action": "deliver_now", "_selected_action": [grant.pk]})
    assert PointsLedgerEntry.objects.count() == 1


def test_recompute_view_writes_todays_provisions_and_the_journal(operator, campaigns, customer, record_bill):
    from django.utils import timezone

    from campaigns.models import ProvisionDaily
    from campaigns.services.provisions import month_previous

    inner, outer = campaigns
    customer("c-1", stage=20)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])  # 60 points, grant pending
    record_bill(bill_event("c-1", [line("p-2", 5000)]))  # not settled yet: 100 points expected
    url = "/admin/campaigns/provisionjournal/recompute/"
    assert b"Recompute this and last month" in operator.get("/admin/campaigns/provisionjournal/").content
    assert operator.get(url).status_code == 302 and not ProvisionJournal.objects.exists()  # GET changes nothing

    response = operator.post(url, follow=True)

    assert "Recomputed 4 journal rows and today&#x27;s provisions." in response.content.decode()
    daily = ProvisionDaily.objects.get(campaign=inner, day=business_date(timezone.now()))
    assert (daily.unsettled_lines, daily.expected_points, daily.pending_grant_points) == (1, 100, 60)
    month = business_month_label(timezone.now())
    assert set(ProvisionJournal.objects.values_list("month", "campaign_id")) == {
        (m, c.pk) for m in (month, month_previous(month)) for c in (inner, outer)}
    journal = ProvisionJournal.objects.get(campaign=inner, month=month)
    assert (journal.opening, journal.accrued, journal.granted, journal.closing) == (0, 60, 0, 60)


def test_marketer_sees_settlement_rows_but_cannot_run_operator_actions(marketer, campaigns, customer, record_bill):
    from campaigns.models import Bill, PointsGrant

    customer("c-1", stage=10)
    pending = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-2", 3000)]))])
    assert b"settle_now" not in marketer.get("/admin/campaigns/bill/").content
    marketer.post("/admin/campaigns/bill/", {"action": "settle_now", "_selected_action": [pending]})
    marketer.post("/admin/campaigns/pointsgrant/", {"action": "deliver_now",
                                                    "_selected_action": list(PointsGrant.objects.values_list("pk",
                                                                                                             flat=True))})
    assert Bill.objects.get(pk=pending).status == "pending"
    assert PointsGrant.objects.get().status == "pending"
    journal = marketer.get("/admin/campaigns/provisionjournal/")
    assert journal.status_code == 200 and b"Recompute this and last month" not in journal.content
    assert marketer.post("/admin/campaigns/provisionjournal/recompute/").status_code == 403
    assert not ProvisionJournal.objects.exists()


def test_journal_csv_export(marketer, campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    grants_deliver_all()
    from django.utils import timezone

    provision_journal_compute(month=business_month_label(timezone.now()))
    response = marketer.post("/admin/campaigns/provisionjournal/", {
        "action": "export_csv", "_selected_action": list(ProvisionJournal.objects.values_list("pk", flat=True))})
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0] == "month,campaign_id,campaign,opening,accrued,granted,reversed,closing,computed_at"
    assert ",Marketplace purchases,0,30,30,0,0," in body
