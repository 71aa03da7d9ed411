"""What an approver reads on a campaign change request, and rejections in the campaign's version history."""

import re

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignBacktest, CampaignVersion
from campaigns.services import campaign_backtest_compute
from campaigns.tests.test_four_eyes import change_form, people  # noqa: F401 (people: a fixture)
from loyalty.selectors import stage_labels
from mercari_ops.common.approvals import change_request_approve, change_request_reject
from mercari_ops.common.models import ChangeRequest

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/campaigns/campaign/"


def changed_table(page: str) -> str:
    """The diff's table of changed fields (the unchanged ones are folded into <details>)."""
    match = re.search(r'<table class="change-diff">.*?</table>', page, re.S)
    assert match, "no table of changed fields"
    return match.group(0)


def test_the_request_page_shows_only_changed_fields_formatted(client, people, campaigns):  # noqa: F811
    inner, _ = campaigns
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/",
                change_form(inner, **{"rates-0-rate": "5.0", "upper_limit": "12345"}))
    change = ChangeRequest.objects.get(kind="campaign.change")
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    changed = changed_table(page)
    # only the cap and the first rate, written as the form writes them
    assert sorted(re.findall(r'<th scope="row">([^<]+)</th>', changed)) == ["rates.0.rate", "upper_limit"]
    assert "12,345 pt" in changed and "1.0%" in changed and "5.0%" in changed
    # the rest behind "show all", times in Tokyo wall time, not UTC ISO
    assert "Show all fields" in page and '<th scope="row">name</th>' in page.split("change-diff-all", 1)[1]
    starts = f"{timezone.localtime(inner.starts_at):%Y-%m-%d %H:%M} JST"
    assert starts in page and inner.starts_at.isoformat() not in page


def test_the_figures_are_a_backtest_table_with_points_and_stage_names(client, people, backtest_draft,  # noqa: F811
                                                                       campaigns):
    inner, _ = campaigns
    now = campaign_backtest_compute(campaign_id=inner.pk, month="2026-10")
    CampaignBacktest.objects.create(campaign=inner, month="2026-10", status="done", result=now,
                                    finished_at=timezone.now())
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, **{"rates-0-rate": "5.0"}))
    change = ChangeRequest.objects.get(kind="campaign.change")
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    comparison = {row["figure"]: row for row in change.preview["comparison"]}
    totals = re.search(r'<table class="campaign-backtest-totals">.*?</table>', page, re.S).group(0)
    assert f'{comparison["points"]["now"]:,} pt' in totals and f'{comparison["points"]["proposed"]:,} pt' in totals
    assert f'<th scope="row">bill lines</th><td class="numeric">{comparison["lines"]["now"]:,}</td>' in totals
    stages = re.search(r'<table class="campaign-backtest-stages">.*?</table>', page, re.S).group(0)
    assert stage_labels([10])[10] in stages and "Stage 10" not in stages
    assert "<svg" in page and "points_after" not in page and "by_stage" not in page


def test_a_rejection_is_in_the_version_history_and_the_campaign_is_unchanged(client, people, campaigns):  # noqa: F811
    inner, _ = campaigns
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, upper_limit="800"))
    change = change_request_reject(request_id=ChangeRequest.objects.get().pk, by=people["anna"], note="too low")
    inner.refresh_from_db()
    assert (inner.upper_limit, inner.version) == (None, 1)
    entry = CampaignVersion.objects.get(campaign=inner, decision="rejected")
    assert (entry.version, entry.changed_by, entry.after["upper_limit"]) == (1, "anna", 800)
    assert f"change request #{change.pk} by mika, rejected by anna: too low" in entry.note
    page = client.get(f"/admin/campaigns/campaign/{inner.pk}/change/").content.decode()
    assert "Rejected (nothing changed)" in page and f"#{change.pk} by mika, rejected by anna" in page
    # an approved change after it is the next real version, beside the rejection
    client.post(f"/admin/campaigns/campaign/{inner.pk}/change/", change_form(inner, upper_limit="900"))
    approved = ChangeRequest.objects.get(status="pending")
    change_request_approve(request_id=approved.pk, by=people["anna"])
    assert list(CampaignVersion.objects.filter(campaign=inner).values_list("version", "decision")) == [
        (2, "applied"), (1, "rejected"), (1, "applied")]


def test_a_rejected_activation_leaves_a_draft_whose_first_version_is_still_1(client, people, backtest_draft):  # noqa: F811
    client.post(CHANGELIST, {"action": "activate", "_selected_action": [backtest_draft.pk]})
    change_request_reject(request_id=ChangeRequest.objects.get().pk, by=people["anna"])
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == Campaign.Status.DRAFT
    assert CampaignVersion.objects.get(campaign=backtest_draft).decision == "rejected"
    client.post(CHANGELIST, {"action": "activate", "_selected_action": [backtest_draft.pk]})
    change_request_approve(request_id=ChangeRequest.objects.get(status="pending").pk, by=people["anna"])
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == Campaign.Status.ACTIVE
    assert CampaignVersion.objects.get(campaign=backtest_draft, decision="applied").version == backtest_draft.version
