"""Four eyes on campaigns: activating one, and changing one that is not a draft, go through a change request.

Two kinds, registered at start (CampaignsConfig.ready) with mercari_ops.common.approvals:
- `campaign.activate`: payload {}; applied by `campaign_activate`.
- `campaign.change`: payload {"fields": {name: JSON value}, "rates": [[from, to, "rate"], ...] or null};
  applied by `campaign_update`.
The fingerprint is the campaign's snapshot (fields, status, rates) and version: any change after the request
makes it stale. The version history (CampaignVersion) written by the apply names the request and its approver.
The approver's figures are the campaign's latest backtest (a month can hold a million lines, too many for a
request): `campaign_change_request` queues one over last month when none is there yet, and the request page
reads it again while an activation is pending. A change is also simulated as proposed over that month, at
request time, when the month has at most CHANGE_REQUEST_SYNC_BACKTEST_MAX_LINES bill lines.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mercari_ops.common.approvals import change_request_create, register_change_kind, state_fingerprint
from mercari_ops.common.business_time import MONTH_FORMAT, business_month, month_shift
from mercari_ops.common.errors import NotFound
from mercari_ops.common.models import ChangeRequest

from .approvals_display import format_value, render_preview
from .models import Bill, Campaign, CampaignBacktest, CampaignVersion
from .services import (
    campaign_activate,
    campaign_backtest_compute,
    campaign_backtest_queue,
    campaign_snapshot,
    campaign_update,
)

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


def _apply_payload(campaign_id: int, payload: dict, *, by: str, note: str) -> None:
    fields = dict(payload.get("fields", {}))
    for name in DATETIME_FIELDS:
        if name in fields:
            fields[name] = datetime.fromisoformat(fields[name])
    rates = payload.get("rates")
    campaign_update(campaign_id=campaign_id, by=by, rates=None if rates is None else [tuple(r) for r in rates],
                    note=note, **fields)


def _apply_change(*, change: ChangeRequest) -> None:
    _apply_payload(int(change.target_id), change.payload, by=change.requested_by,
                   note=_version_note(change, "changed"))


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
            "id": run.pk, "month": run.month, "at": f"{timezone.localtime(run.finished_at):%Y-%m-%d %H:%M}"},
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


class _Rollback(Exception):
    """Raised to undo the proposal applied only to simulate it."""


def _proposed_backtest(campaign_id: int, payload: dict, month: str) -> dict | None:
    """The backtest of the proposed campaign, run here when the month is small enough; nothing is kept (the
    proposal is applied inside a savepoint that is rolled back). None when the month is too big for a request."""
    lines = Bill.objects.filter(billing_month=month).aggregate(lines=Sum("line_count"))["lines"] or 0
    if lines > settings.CHANGE_REQUEST_SYNC_BACKTEST_MAX_LINES:
        return None
    result: dict = {}
    try:
        with transaction.atomic():
            _apply_payload(campaign_id, payload, by="", note="")
            result = campaign_backtest_compute(campaign_id=campaign_id, month=month)
            raise _Rollback
    except _Rollback:
        pass
    return result


def change_figures(*, target_id: str, payload: dict) -> dict:
    """For a change: the latest backtest of the campaign as it is, and the same month simulated as proposed."""
    figures = backtest_figures(target_id=target_id, payload=payload)
    latest = (CampaignBacktest.objects.filter(campaign_id=int(target_id), status=CampaignBacktest.Status.DONE)
              .order_by("-finished_at", "-pk").first())
    month = latest.month if latest else month_shift(business_month(timezone.now()), -1).strftime(MONTH_FORMAT)
    proposed = _proposed_backtest(int(target_id), payload, month)
    if proposed is None:
        figures["proposed"] = _("not simulated: %(month)s has too many bill lines for a request") % {"month": month}
        return figures
    now = latest.result if latest else {}
    figures["scope"] = _("now: the campaign as stored; proposed: the same month with this change applied")
    figures["comparison"] = [{"figure": key, "now": now.get(key), "proposed": proposed.get(key)}
                             for key in ("lines", "lines_rewarded", "recipients", "rewards", "points", "cap_hits",
                                         "customers_at_cap")]
    figures["comparison_month"] = month
    figures["proposed_by_stage"] = proposed.get("by_stage", [])
    return figures


def campaign_rejection_record(*, change: ChangeRequest) -> None:
    """A rejected request in the campaign's version history (the kinds' on_reject, inside the rejecting
    transaction): the proposal as before/after, the decider, the version it was proposed against; the campaign
    itself is not touched."""
    campaign = Campaign.objects.filter(pk=int(change.target_id)).first()
    if campaign is None:
        return
    what = "activation" if change.kind == ACTIVATE else "change"
    note = (f"rejected {what}: change request #{change.pk} by {change.requested_by}, rejected by "
            f"{change.decided_by}" + (f": {change.decision_note}" if change.decision_note else ""))
    CampaignVersion.objects.create(campaign=campaign, version=campaign.version, changed_by=change.decided_by,
                                   changed_at=change.decided_at or timezone.now(), note=note[:200],
                                   before=change.before, after=change.after or {},
                                   decision=CampaignVersion.Decision.REJECTED)


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
                         preview=backtest_figures, live_preview=True, render_preview=render_preview,
                         format_value=format_value, on_reject=campaign_rejection_record)
    register_change_kind(CHANGE, label=gettext_lazy("Change a campaign that is not a draft"),
                         target_type=TARGET_TYPE, describe=_describe_change, fingerprint=_fingerprint,
                         apply=_apply_change, preview=change_figures, render_preview=render_preview,
                         format_value=format_value, on_reject=campaign_rejection_record)
