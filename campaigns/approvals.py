"""Four eyes on campaigns: activating one, and changing one that is not a draft, go through a change request.

Two kinds, registered at start (CampaignsConfig.ready) with mercari_ops.common.approvals:
- `campaign.activate`: payload {}; applied by `campaign_activate`.
- `campaign.change`: payload {"fields": {name: JSON value}, "rates": [[from, to, "rate"], ...] or null};
  applied by `campaign_update`.
The fingerprint is the campaign's snapshot (fields, status, rates) and version: any change after the request
makes it stale. The version history (CampaignVersion) written by the apply names the request and its approver.
The approver's figures are the campaign's latest backtest (a month can hold a million lines, too many for a
request): `campaign_change_request` queues one over last month when none is there yet, and the request page
reads it again while the request is pending.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mercari_ops.common.approvals import change_request_create, register_change_kind, state_fingerprint
from mercari_ops.common.business_time import MONTH_FORMAT, business_month, month_shift
from mercari_ops.common.errors import NotFound
from mercari_ops.common.models import ChangeRequest

from .models import Campaign, CampaignBacktest
from .services import campaign_activate, campaign_backtest_queue, campaign_snapshot, campaign_update

ACTIVATE = "campaign.activate"
CHANGE = "campaign.change"
TARGET_TYPE = "campaigns.campaign"
DATETIME_FIELDS = ("starts_at", "ends_at")


def _campaign(target_id: str) -> Campaign:
    campaign = Campaign.objects.filter(pk=int(target_id)).first()
    if campaign is None:
        raise NotFound(_("campaign %(id)s does not exist") % {"id": target_id}, "target_id")
    return campaign


def _fingerprint(*, target_id: str, payload: dict) -> str:
    campaign = Campaign.objects.filter(pk=int(target_id)).first()
    if campaign is None:
        return "gone"
    return state_fingerprint({"snapshot": campaign_snapshot(campaign), "version": campaign.version})


def _rate_text(rate) -> str:
    return f"{Decimal(str(rate)):.1f}"


def _proposed(before: dict, payload: dict) -> dict:
    after = {**before, **payload.get("fields", {})}
    if payload.get("rates") is not None:
        after["rates"] = [{"stage_from": a, "stage_to": b, "rate": _rate_text(r)} for a, b, r in payload["rates"]]
    return after


def _describe_activate(*, target_id: str, payload: dict):
    campaign = _campaign(target_id)
    before = campaign_snapshot(campaign)
    return str(campaign), before, {**before, "status": Campaign.Status.ACTIVE}


def _describe_change(*, target_id: str, payload: dict):
    campaign = _campaign(target_id)
    before = campaign_snapshot(campaign)
    return str(campaign), before, _proposed(before, payload)


def _version_note(change: ChangeRequest, what: str) -> str:
    return f"{what} (change request #{change.pk} by {change.requested_by}, approved by {change.decided_by})"


def _apply_activate(*, change: ChangeRequest) -> None:
    campaign_activate(campaign_id=int(change.target_id), by=change.requested_by,
                      note=_version_note(change, "activated"))


def _apply_change(*, change: ChangeRequest) -> None:
    fields = dict(change.payload.get("fields", {}))
    for name in DATETIME_FIELDS:
        if name in fields:
            fields[name] = datetime.fromisoformat(fields[name])
    rates = change.payload.get("rates")
    campaign_update(campaign_id=int(change.target_id), by=change.requested_by,
                    rates=None if rates is None else [tuple(rate) for rate in rates],
                    note=_version_note(change, "changed"), **fields)


def backtest_figures(*, target_id: str, payload: dict) -> dict:
    """The latest finished backtest of the campaign as it is stored (a proposed change is not simulated)."""
    runs = CampaignBacktest.objects.filter(campaign_id=int(target_id))
    run = runs.filter(status=CampaignBacktest.Status.DONE).order_by("-finished_at", "-pk").first()
    waiting = runs.filter(status__in=[CampaignBacktest.Status.QUEUED, CampaignBacktest.Status.RUNNING]).exists()
    if run is None:
        return {"backtest": _("none finished yet: one is queued, reload this page when it is done") if waiting
                else _("none yet: run one from the campaign's backtest page")}
    result = run.result or {}
    figures = {
        "backtest": _("run #%(id)s over %(month)s, finished %(at)s") % {
            "id": run.pk, "month": run.month, "at": f"{run.finished_at:%Y-%m-%d %H:%M} UTC"},
        "scope": _("the campaign as stored now; a proposed change of rates or filters is not simulated"),
    }
    for key in ("recipients", "points", "rewards", "cap_hits", "customers_at_cap", "lines", "lines_rewarded"):
        if key in result:
            figures[key] = result[key]
    if waiting:
        figures["newer"] = _("a newer backtest is queued or running")
    if result.get("by_stage"):
        figures["by_stage"] = result["by_stage"]
    return figures


def campaign_change_request(*, campaign_id: int, kind: str, payload: dict, by: str, request=None,
                            note: str = "") -> ChangeRequest:
    """Request `kind` for a campaign and make sure the approver will have backtest figures to look at."""
    with transaction.atomic():
        month = month_shift(business_month(timezone.now()), -1).strftime(MONTH_FORMAT)
        if not CampaignBacktest.objects.filter(campaign_id=campaign_id, month=month).exclude(
                status=CampaignBacktest.Status.FAILED).exists():
            campaign_backtest_queue(campaign_id=campaign_id, month=month, by=by)
        return change_request_create(kind=kind, target_id=str(campaign_id), payload=payload, requested_by=by,
                                     request=request, note=note,
                                     summary=_("Activate the campaign") if kind == ACTIVATE
                                     else _("Change the campaign"))


def campaign_form_payload(*, campaign: Campaign, fields: dict, rates: list[tuple[int, int, object]] | None) -> dict:
    """The `campaign.change` payload for what an admin form proposes: only what differs from the campaign."""
    before = campaign_snapshot(campaign)
    changed = {}
    for name, value in fields.items():
        stored = value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value
        old = before.get(name)
        if name in DATETIME_FIELDS and old:
            old = datetime.fromisoformat(old).astimezone(UTC).isoformat()
        if stored != old:
            changed[name] = stored
    proposed_rates = None
    if rates is not None:
        proposed_rates = [[a, b, _rate_text(r)] for a, b, r in sorted(rates, key=lambda rate: rate[0])]
        if [{"stage_from": a, "stage_to": b, "rate": r} for a, b, r in proposed_rates] == before["rates"]:
            proposed_rates = None
    return {"fields": changed, "rates": proposed_rates}


def register() -> None:
    register_change_kind(ACTIVATE, label=gettext_lazy("Activate a campaign"), target_type=TARGET_TYPE,
                         describe=_describe_activate, fingerprint=_fingerprint, apply=_apply_activate,
                         preview=backtest_figures, live_preview=True)
    register_change_kind(CHANGE, label=gettext_lazy("Change a campaign that is not a draft"),
                         target_type=TARGET_TYPE, describe=_describe_change, fingerprint=_fingerprint,
                         apply=_apply_change, preview=backtest_figures, live_preview=True)
