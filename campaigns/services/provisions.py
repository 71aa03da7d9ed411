"""Provisions (accrued points liability) for accounting.

Daily (`campaigns.provisions_daily`): per campaign, the points expected for bills recorded
but not settled yet (a dry settlement plan over the pending bills, caps included) and the
points of rewards written but not yet granted.

Month-end journal per campaign (recomputed from the rewards, so re-running is harmless):
    opening  = liability at the start of the month
    accrued  = points of rewards written in the month (settlement recognised them)
    granted  = points of rewards whose grant was delivered in the month
    reversed = points of rewards reversed in the month (grant rejected by the points service)
    closing  = opening + accrued - granted - reversed
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

from django.db import transaction
from django.db.models import Q, Sum
from django.utils import timezone

from mercari_ops.common.business_time import MONTH_FORMAT, business_date, month_bounds, month_parse, month_shift

from ..models import Bill, Campaign, CampaignReward, PointsGrant, ProvisionDaily, ProvisionJournal
from .settlement import SettlementContext, SettlementReport, bills_settle


def month_previous(month: str) -> str:
    return month_shift(month_parse(month), -1).strftime(MONTH_FORMAT)


def _sum(query, campaign_id: int) -> int:
    return query.filter(campaign_id=campaign_id).aggregate(total=Sum("points"))["total"] or 0


def liability_at(*, campaign_id: int, at: datetime) -> int:
    rewards = CampaignReward.objects.filter(campaign_id=campaign_id)
    accrued = _sum(rewards.filter(created_at__lt=at), campaign_id)
    granted = _sum(rewards.filter(grant__sent_at__lt=at, grant__status=PointsGrant.Status.SENT), campaign_id)
    reversed_ = _sum(rewards.filter(reversed_at__lt=at), campaign_id)
    return accrued - granted - reversed_


@transaction.atomic
def provision_journal_compute(*, month: str) -> list[ProvisionJournal]:
    start, end = month_bounds(month)
    rows = []
    campaigns = Campaign.objects.exclude(status=Campaign.Status.DRAFT).filter(starts_at__lt=end)
    for campaign in campaigns:
        rewards = CampaignReward.objects.filter(campaign=campaign)
        opening = liability_at(campaign_id=campaign.pk, at=start)
        accrued = _sum(rewards.filter(created_at__gte=start, created_at__lt=end), campaign.pk)
        granted = _sum(rewards.filter(grant__status=PointsGrant.Status.SENT, grant__sent_at__gte=start,
                                      grant__sent_at__lt=end), campaign.pk)
        reversed_ = _sum(rewards.filter(reversed_at__gte=start, reversed_at__lt=end), campaign.pk)
        row, _ = ProvisionJournal.objects.update_or_create(
            campaign=campaign, month=month,
            defaults={"opening": opening, "accrued": accrued, "granted": granted, "reversed": reversed_,
                      "closing": opening + accrued - granted - reversed_, "computed_at": timezone.now()},
        )
        rows.append(row)
    return rows


def provisions_daily_compute(*, day: date | None = None, batch: int = 500) -> dict[int, dict]:
    """Expected points of pending bills (dry plan) and of undelivered grants, per campaign, for `day`."""
    day = day or business_date(timezone.now())
    ctx = SettlementContext.load()
    expected = SettlementReport()
    dry_used: dict = {}
    last = 0
    while True:
        ids = list(Bill.objects.filter(status=Bill.Status.PENDING, pk__gt=last).order_by("pk")
                   .values_list("pk", flat=True)[:batch])
        if not ids:
            break
        report, _ = bills_settle(bill_ids=ids, ctx=ctx, dry_run=True, dry_used=dry_used)
        expected.merge(report)
        last = ids[-1]
    pending = dict(
        CampaignReward.objects.filter(Q(grant__status=PointsGrant.Status.PENDING), reversed_at__isnull=True)
        .values("campaign_id").annotate(total=Sum("points")).values_list("campaign_id", "total")
    )
    result = {}
    with transaction.atomic():
        for campaign_id in ctx.names:
            totals = expected.campaigns.get(campaign_id)
            values = {"unsettled_lines": totals.rewards if totals else 0,
                      "expected_points": totals.points if totals else 0,
                      "pending_grant_points": pending.get(campaign_id, 0), "computed_at": timezone.now()}
            ProvisionDaily.objects.update_or_create(campaign_id=campaign_id, day=day, defaults=values)
            result[campaign_id] = values
    return result


JOURNAL_CSV_HEADER = ["month", "campaign_id", "campaign", "opening", "accrued", "granted", "reversed", "closing",
                      "computed_at"]


def journal_csv(rows) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(JOURNAL_CSV_HEADER)
    for row in rows:
        writer.writerow([row.month, row.campaign_id, row.campaign.name, row.opening, row.accrued, row.granted,
                         row.reversed, row.closing, row.computed_at.isoformat()])
    return out.getvalue()
