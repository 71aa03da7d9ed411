"""Four eyes on campaigns: a marketer alone activates nothing and changes no live campaign; an approver decides."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from campaigns.models import Campaign, CampaignBacktest, CampaignVersion
from campaigns.services import campaign_update
from mercari_ops.common.approvals import (
    APPROVERS,
    ApprovalRefused,
    ChangeRequestStale,
    approver_group_sync,
    change_request_approve,
    change_request_reject,
)
from mercari_ops.common.models import AuditLogEntry, ChangeRequest
from mercari_ops.common.roles import MARKETERS, role_permissions_sync

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/campaigns/campaign/"


def staff(name, group):
    user = get_user_model().objects.create_user(name, password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def people(client):
    role_permissions_sync()
    approver_group_sync()
    mika = staff("mika", MARKETERS)
    client.force_login(mika)
    return {"mika": mika, "anna": staff("anna", APPROVERS)}


def change_form(campaign, **overrides):
    """The change form as the page posts it, with `overrides` (rates as "rates-<i>-rate": value)."""
    campaign.refresh_from_db()
    rates = list(campaign.rates.order_by("stage_from"))
    local = timezone.localtime(campaign.starts_at), timezone.localtime(campaign.ends_at)  # the admin's wall time
    data = {
        "name": campaign.name, "upper_limit": campaign.upper_limit or "",
        "starts_at_0": f"{local[0]:%Y-%m-%d}", "starts_at_1": f"{local[0]:%H:%M:%S}",
        "ends_at_0": f"{local[1]:%Y-%m-%d}", "ends_at_1": f"{local[1]:%H:%M:%S}",
        "user_filters": json.dumps(campaign.user_filters), "payment_filters": json.dumps(campaign.payment_filters),
        "rates-TOTAL_FORMS": str(len(rates)), "rates-INITIAL_FORMS": str(len(rates)), "rates-MIN_NUM_FORMS": "0",
        "rates-MAX_NUM_FORMS": "1000",
        "versions-TOTAL_FORMS": str(campaign.versions.count()), "versions-INITIAL_FORMS":
            str(campaign.versions.count()), "versions-MIN_NUM_FORMS": "0", "versions-MAX_NUM_FORMS": "1000",
    }
    for i, rate in enumerate(rates):
        data.update({f"rates-{i}-id": str(rate.pk), f"rates-{i}-campaign": str(campaign.pk),
                     f"rates-{i}-stage_from": str(rate.stage_from), f"rates-{i}-stage_to": str(rate.stage_to),
                     f"rates-{i}-rate": str(rate.rate)})
    for i, version in enumerate(campaign.versions.order_by("-version")):
        data[f"versions-{i}-id"] = str(version.pk)
        data[f"versions-{i}-campaign"] = str(campaign.pk)
    data.update(overrides)
    return data


def test_marketer_alone_cannot_activate_and_the_approver_can(client, people, backtest_draft):
    # when the marketer activates the draft
    response = client.post(CHANGELIST, {"action": "activate", "_selected_action": [backtest_draft.pk]}, follow=True)
    # then a change request, the campaign still a draft, and a backtest queued for the approver's figures
    assert "another person with the approver role" in response.content.decode()
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "draft"
    change = ChangeRequest.objects.get(kind="campaign.activate")
    assert (change.status, change.requested_by, change.before["status"], change.after["status"]) == (
        "pending", "mika", "draft", "active")
    assert CampaignBacktest.objects.filter(campaign=backtest_draft).exists()
    # the requester cannot approve it
    with pytest.raises(ApprovalRefused):
        change_request_approve(request_id=change.pk, by=people["mika"])
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "draft"
    # a second person with the approver role approves: applied, in the version history and the audit log
    change_request_approve(request_id=change.pk, by=people["anna"])
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "active"
    version = CampaignVersion.objects.get(campaign=backtest_draft)
    assert version.changed_by == "mika" and f"change request #{change.pk}" in version.note
    assert "approved by anna" in version.note
    actions = set(AuditLogEntry.objects.filter(target_type="campaigns.campaign", target_id=str(backtest_draft.pk))
                  .values_list("action", "actor"))
    assert {("change_request.create", "mika"), ("change_request.approve", "anna")} <= actions


def test_request_page_shows_the_latest_backtest_figures(client, people, backtest_draft, eager_celery,
                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/campaigns/campaign/{backtest_draft.pk}/backtest/", {"month": "2026-10"})
    client.post(CHANGELIST, {"action": "activate", "_selected_action": [backtest_draft.pk]})
    change = ChangeRequest.objects.get(kind="campaign.activate")
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    assert "over 2026-10" in page and '<th scope="row">points</th><td class="numeric">1,700 pt</td>' in page


def test_changing_a_live_campaign_is_a_request_and_nothing_changes_until_approved(client, people, campaigns):
    inner, _ = campaigns
    response = client.post(f"/admin/campaigns/campaign/{inner.pk}/change/",
                           change_form(inner, **{"rates-0-rate": "5.0", "upper_limit": "800"}))
    assert response.status_code == 302, response.content.decode()[:2000]
    inner.refresh_from_db()
    assert (inner.upper_limit, str(inner.rates.order_by("stage_from")[0].rate), inner.version) == (None, "1.0", 1)
    change = ChangeRequest.objects.get(kind="campaign.change")
    assert change.payload == {"fields": {"upper_limit": 800},
                              "rates": [[10, 19, "5.0"], [20, 29, "2.0"], [30, 39, "3.0"], [40, 49, "4.0"]]}
    page = client.get(response["Location"]).content.decode()
    assert "rates.0.rate" in page and "5.0" in page and "Approve and apply" not in page

    change_request_approve(request_id=change.pk, by=people["anna"])
    inner.refresh_from_db()
    assert (inner.upper_limit, str(inner.rates.order_by("stage_from")[0].rate), inner.version) == (800, "5.0", 2)
    assert CampaignVersion.objects.get(campaign=inner, version=2).after["upper_limit"] == 800


def test_saving_a_live_campaign_unchanged_makes_no_request(client, people, campaigns):
    inner, _ = campaigns
    response = client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner), follow=True)
    assert "Nothing changed." in response.content.decode()
    assert not ChangeRequest.objects.exists()


def test_a_draft_stays_directly_editable(client, people, backtest_draft):
    response = client.post(f"/admin/campaigns/campaign/{backtest_draft.pk}/change/",
                           change_form(backtest_draft, name="Double (edited)"))
    assert response.status_code == 302
    backtest_draft.refresh_from_db()
    assert backtest_draft.name == "Double (edited)" and not ChangeRequest.objects.exists()


def test_a_rejected_change_leaves_the_campaign_as_it_was(client, people, campaigns):
    inner, _ = campaigns
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, upper_limit="800"))
    change = change_request_reject(request_id=ChangeRequest.objects.get().pk, by=people["anna"], note="too low")
    inner.refresh_from_db()
    assert (change.status, inner.upper_limit, inner.version) == ("rejected", None, 1)
    assert not CampaignVersion.objects.filter(campaign=inner, version=2).exists()
    # the rejection is on the campaign's own page (its change history) and in the audit log
    page = client.get(f"/admin/campaigns/campaign/{inner.pk}/change/").content.decode()
    assert "Rejected" in page and "too low" in page
    assert AuditLogEntry.objects.filter(action="change_request.reject", target_id=str(inner.pk)).exists()


def test_approving_a_stale_request_is_refused(client, people, campaigns):
    inner, _ = campaigns
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, upper_limit="800"))
    change = ChangeRequest.objects.get()
    # the campaign changes after the request (another approved change)
    campaign_update(campaign_id=inner.pk, by="someone", upper_limit=2000)
    with pytest.raises(ChangeRequestStale):
        change_request_approve(request_id=change.pk, by=people["anna"])
    inner.refresh_from_db()
    change.refresh_from_db()
    assert (inner.upper_limit, change.status) == (2000, "stale")


def test_marketer_cannot_make_a_campaign_active_through_the_form(client, people, backtest_draft):
    client.post(f"/admin/campaigns/campaign/{backtest_draft.pk}/change/",
                change_form(backtest_draft, status="active"))
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "draft"


def test_emergency_end_is_immediate_and_audited(client, people, campaigns):
    inner, _ = campaigns
    response = client.post(CHANGELIST, {"action": "end", "_selected_action": [inner.pk]}, follow=True,
                           REMOTE_ADDR="10.9.8.7")
    assert "1 campaign(s) ended." in response.content.decode()
    inner.refresh_from_db()
    assert inner.status == Campaign.Status.ENDED and not ChangeRequest.objects.exists()
    entry = AuditLogEntry.objects.get(action="campaign.end")
    assert (entry.actor, entry.actor_ip, entry.target_id) == ("mika", "10.9.8.7", str(inner.pk))
    assert (entry.before["status"], entry.after["status"]) == ("active", "ended")


def test_a_change_request_simulates_the_proposal_and_keeps_nothing(client, people, backtest_draft, campaigns):
    from django.utils import timezone as tz

    from campaigns.services import campaign_backtest_compute

    inner, _ = campaigns
    now = campaign_backtest_compute(campaign_id=inner.pk, month="2026-10")
    CampaignBacktest.objects.create(campaign=inner, month="2026-10", status="done", result=now, finished_at=tz.now())
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, **{"rates-0-rate": "5.0"}))
    change = ChangeRequest.objects.get(kind="campaign.change")
    comparison = {row["figure"]: row for row in change.preview["comparison"]}
    assert comparison["points"]["now"] == now["points"] > 0
    assert comparison["points"]["proposed"] > now["points"]  # stage 10 earns 5% instead of 1%
    # the simulation left the campaign, its rates and its history as they were
    inner.refresh_from_db()
    assert (str(inner.rates.order_by("stage_from")[0].rate), inner.version) == ("1.0", 1)
    assert not CampaignVersion.objects.filter(campaign=inner, version=2).exists()
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    assert "proposed" in page and f'{comparison["points"]["proposed"]:,} pt' in page
