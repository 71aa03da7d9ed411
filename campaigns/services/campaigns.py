"""Campaign writes: create, change (versioned once active), activate, end."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from mercari_ops.common.audit import audit_record
from mercari_ops.common.errors import Conflict, ValidationFailed

from .. import rules
from ..catalog import catalog_changed
from ..models import Campaign, CampaignStageRate, CampaignVersion

CAMPAIGN_FIELDS = ("name", "starts_at", "ends_at", "user_filters", "payment_filters", "upper_limit", "status")


def campaign_snapshot(campaign: Campaign) -> dict:
    """JSON picture of a campaign and its rates, as stored in CampaignVersion.before/after."""
    data = {}
    for name in CAMPAIGN_FIELDS:
        value = getattr(campaign, name)
        data[name] = value.isoformat() if isinstance(value, datetime) else value
    data["rates"] = [
        {"stage_from": r.stage_from, "stage_to": r.stage_to, "rate": f"{r.rate:.1f}"}
        for r in CampaignStageRate.objects.filter(campaign=campaign).order_by("stage_from")
    ] if campaign.pk else []
    return data


def campaign_validate(*, name: str, starts_at, ends_at, user_filters, payment_filters, upper_limit,
                      rates: list[tuple[int, int, object]] | None) -> None:
    """Every rule a campaign must satisfy; raises ValidationFailed naming the bad field or key."""
    if not name or not str(name).strip():
        raise ValidationFailed(gettext("name is required"), "name")
    rules.period_validate(starts_at, ends_at)
    rules.user_filters_validate(user_filters)
    rules.payment_filters_validate(payment_filters)
    rules.upper_limit_validate(upper_limit)
    if rates is not None:
        rules.stage_rates_validate(rates)


def _rates_replace(campaign: Campaign, rates: list[tuple[int, int, object]]) -> None:
    CampaignStageRate.objects.filter(campaign=campaign).delete()
    CampaignStageRate.objects.bulk_create(
        CampaignStageRate(campaign=campaign, stage_from=a, stage_to=b, rate=rules.rate_tenths(r) / 10)
        for a, b, r in rates
    )


@transaction.atomic
def campaign_create(*, name: str, starts_at: datetime, ends_at: datetime, rates: list[tuple[int, int, object]],
                    user_filters: dict | None = None, payment_filters: dict | None = None,
                    upper_limit: int | None = None, status: str = Campaign.Status.DRAFT, by: str = "",
                    request=None) -> Campaign:
    user_filters, payment_filters = user_filters or {}, payment_filters or {}
    campaign_validate(name=name, starts_at=starts_at, ends_at=ends_at, user_filters=user_filters,
                      payment_filters=payment_filters, upper_limit=upper_limit, rates=rates)
    if status not in Campaign.Status.values:
        raise ValidationFailed(f"status must be one of {', '.join(Campaign.Status.values)}", "status")
    campaign = Campaign.objects.create(name=name, starts_at=starts_at, ends_at=ends_at, user_filters=user_filters,
                                       payment_filters=payment_filters, upper_limit=upper_limit, status=status)
    _rates_replace(campaign, rates)
    if status == Campaign.Status.ACTIVE:
        CampaignVersion.objects.create(campaign=campaign, version=1, changed_by=by, note="created active",
                                       before=None, after=campaign_snapshot(campaign))
    catalog_changed()
    audit_record(action="campaign.create", target=campaign, before=None, after=campaign_snapshot(campaign),
                 request=request, actor=by or None)
    return campaign


def campaign_version_record(*, campaign: Campaign, before: dict | None, by: str, note: str = "") -> bool:
    """After a change: if the campaign is or was active and something differs, bump and record a version.

    Call inside the transaction of the change, with `before` taken before it. Always
    invalidates the in-memory catalogs. Returns True when a version was written.
    """
    catalog_changed()
    after = campaign_snapshot(campaign)
    was_active = before is not None and before.get("status") == Campaign.Status.ACTIVE
    if before == after or not (was_active or campaign.status == Campaign.Status.ACTIVE):
        return False
    locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
    has_versions = CampaignVersion.objects.filter(campaign=campaign,
                                                  decision=CampaignVersion.Decision.APPLIED).exists()
    version = locked.version + 1 if has_versions else locked.version
    Campaign.objects.filter(pk=campaign.pk).update(version=version, updated_at=timezone.now())
    campaign.version = version
    CampaignVersion.objects.create(campaign=campaign, version=version, changed_by=by, before=before, after=after,
                                   note=note[:200])
    return True


@transaction.atomic
def campaign_update(*, campaign_id: int, by: str = "", rates: list[tuple[int, int, object]] | None = None,
                    note: str = "", request=None, **changes) -> Campaign:
    """Change fields and/or replace the rates; versioned when the campaign is active."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    unknown = set(changes) - set(CAMPAIGN_FIELDS)
    if unknown:
        field = sorted(unknown)[0]
        raise ValidationFailed(f"unknown field {field}", field)
    before = campaign_snapshot(campaign)
    for name, value in changes.items():
        setattr(campaign, name, value)
    current_rates = rates if rates is not None else [
        (r["stage_from"], r["stage_to"], r["rate"]) for r in before["rates"]
    ]
    campaign_validate(name=campaign.name, starts_at=campaign.starts_at, ends_at=campaign.ends_at,
                      user_filters=campaign.user_filters, payment_filters=campaign.payment_filters,
                      upper_limit=campaign.upper_limit, rates=current_rates)
    campaign.updated_at = timezone.now()
    campaign.save()
    if rates is not None:
        _rates_replace(campaign, rates)
    campaign_version_record(campaign=campaign, before=before, by=by, note=note)
    after = campaign_snapshot(campaign)
    if after != before:
        audit_record(action="campaign.update", target=campaign, before=before, after=after, request=request,
                     actor=by or None, note=note)
    return campaign


@transaction.atomic
def campaign_activate(*, campaign_id: int, by: str = "", note: str = "activated") -> Campaign:
    """Make a campaign earn points. From the admin only through an approved change request (four eyes:
    campaigns/approvals.py); `note` goes into the version history (who approved it)."""
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status == Campaign.Status.ACTIVE:
        return campaign
    if campaign.status == Campaign.Status.ENDED:
        raise Conflict(gettext("an ended campaign cannot be activated again; copy it instead"), "status")
    before = campaign_snapshot(campaign)
    campaign_validate(name=campaign.name, starts_at=campaign.starts_at, ends_at=campaign.ends_at,
                      user_filters=campaign.user_filters, payment_filters=campaign.payment_filters,
                      upper_limit=campaign.upper_limit,
                      rates=[(r["stage_from"], r["stage_to"], r["rate"]) for r in before["rates"]])
    campaign.status = Campaign.Status.ACTIVE
    campaign.save(update_fields=["status"])
    campaign_version_record(campaign=campaign, before=before, by=by, note=note)
    return campaign


@transaction.atomic
def campaign_end(*, campaign_id: int, by: str = "", request=None) -> Campaign:
    """Stop estimates; bills of its period still settle (status ended stays settleable).

    The emergency stop: one person's action (no change request), always in the audit log.
    """
    campaign = Campaign.objects.select_for_update().get(pk=campaign_id)
    if campaign.status == Campaign.Status.ENDED:
        return campaign
    before = campaign_snapshot(campaign)
    campaign.status = Campaign.Status.ENDED
    campaign.save(update_fields=["status"])
    campaign_version_record(campaign=campaign, before=before, by=by, note="ended")
    audit_record(action="campaign.end", target=campaign, before=before, after=campaign_snapshot(campaign),
                 request=request, actor=by or None, note="emergency stop: one person's action")
    return campaign
