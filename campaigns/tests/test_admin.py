"""Marketers' admin: validation messages, versioning, CSV exports, merchant import, backtest, provisions."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Campaign, CampaignBacktest, CampaignVersion, MerchantAlias, ProvisionJournal
from campaigns.services import bills_settle, grants_deliver_all, provision_journal_compute
from campaigns.tests.factories import bill_event, line

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
    version = CampaignVersion.objects.get(campaign=inner, version=2)
    assert version.changed_by == "mika"
    assert version.before["rates"][0]["rate"] == "1.0" and version.after["rates"][0]["rate"] == "9.9"
    inner.refresh_from_db()
    assert inner.version == 2


def test_activate_action_records_version_one(marketer, merchants):
    marketer.post(ADD, _form())
    campaign = Campaign.objects.get()
    response = marketer.post("/admin/campaigns/campaign/", {"action": "activate", "_selected_action": [campaign.pk]})
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.status == "active"
    assert CampaignVersion.objects.get(campaign=campaign).note == "activated"


def test_rewards_are_read_only_and_export_as_csv(marketer, campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    assert marketer.get("/admin/campaigns/campaignreward/").status_code == 200
    assert marketer.get("/admin/campaigns/campaignreward/add/").status_code == 403
    from campaigns.models import CampaignReward

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


def test_backtest_of_a_draft_over_a_past_month(marketer, campaigns, customer, record_bill):
    from campaigns.services import campaign_create

    customer("c-1", stage=10)
    customer("c-2", stage=40)
    record_bill(bill_event("c-1", [line("p-1", 100_000), line("p-2", 100_000)]))
    record_bill(bill_event("c-2", [line("p-3", 10_000), line("p-4", 5000, "m-nobody")]))
    draft = campaign_create(name="Double", starts_at="2027-01-01T00:00:00+00:00",
                            ends_at="2027-02-01T00:00:00+00:00", rates=[(10, 29, "1.0"), (30, 49, "2.0")],
                            payment_filters={"mercari_inner_payment": True}, upper_limit=1500)
    response = marketer.post(f"/admin/campaigns/campaign/{draft.pk}/backtest/", {"month": "2026-10"})
    assert response.status_code == 200
    result = CampaignBacktest.objects.get().result
    assert (result["recipients"], result["points"], result["cap_hits"]) == (2, 1700, 1)
    assert result["by_stage"] == [{"stage": 10, "recipients": 1, "rewards": 2, "points": 1500, "cap_hits": 1},
                                  {"stage": 40, "recipients": 1, "rewards": 1, "points": 200, "cap_hits": 0}]
    assert result["lines_unknown_merchant"] == 1
    assert "Cap hits" in response.content.decode()
    draft.refresh_from_db()
    assert draft.status == "draft"
    from campaigns.models import CampaignReward

    assert not CampaignReward.objects.exists()


def test_journal_csv_export(marketer, campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    grants_deliver_all()
    from django.utils import timezone

    provision_journal_compute(month=timezone.now().strftime("%Y-%m"))
    response = marketer.post("/admin/campaigns/provisionjournal/", {
        "action": "export_csv", "_selected_action": list(ProvisionJournal.objects.values_list("pk", flat=True))})
    body = b"".join(response.streaming_content).decode()
    assert body.splitlines()[0] == "month,campaign_id,campaign,opening,accrued,granted,reversed,closing,computed_at"
    assert ",Marketplace purchases,0,30,30,0,0," in body
