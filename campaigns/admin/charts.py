"""What the campaign screens draw: a backtest's points and recipients by stage and its excluded lines by
reason, and a campaign's points granted per day against its cap. Charts are server-side SVG
(mercari_ops.common.charts); stage names come from loyalty's selectors."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from django.db.models import DecimalField, ExpressionWrapper, F, Sum
from django.db.models.functions import Floor, TruncDate
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.selectors import stage_labels
from mercari_ops.common.business_time import business_date, business_zone
from mercari_ops.common.charts import bar_chart, hbar_chart, line_chart
from mercari_ops.common.formatting import number, points, yen

from .. import rules
from ..models import Campaign, CampaignBacktest, CampaignBudget, CampaignReward

REASON_LABELS = {
    rules.DUPLICATE_PAYMENT: _("Duplicate payment (an earlier bill has it)"),
    rules.UNKNOWN_MERCHANT: _("Unknown merchant"),
    rules.UNKNOWN_CUSTOMER: _("Unknown customer"),
    rules.CARD_STATUS: _("Card status"),
    rules.STAGE: _("Stage"),
    rules.CATEGORY: _("Category"),
    rules.MERCHANT: _("Merchant filter"),
    rules.PAYMENT_METHOD: _("Payment method"),
    rules.CHANNEL: _("Channel (marketplace / outside)"),
    rules.NOT_POSITIVE: _("Amount (zero or negative)"),
    rules.ZERO_POINTS: _("Amount (too small for 1 point)"),
    rules.OUTSIDE_PERIOD: _("Paid outside the month"),
    "unexplained": _("Unexplained (please report)"),
}
CHART_DAYS = 62  # a campaign's daily chart shows at most two months
SETTLE_LAG_DAYS = 62  # a campaign's last bills settle in the month after it ends


def reason_label(code: str) -> str:
    return str(REASON_LABELS.get(code, code))


def backtest_display(run: CampaignBacktest) -> dict:
    """Charts and rows of a finished backtest for the template (a run made before reasons existed has
    no `excluded`: the page says so instead of showing an empty chart)."""
    result = run.result or {}
    by_stage = result.get("by_stage") or []
    labels = stage_labels(row["stage"] for row in by_stage)
    stage_rows = [{**row, "label": labels[row["stage"]]} for row in by_stage]
    categories = [row["label"] for row in stage_rows]
    display = {
        "stage_rows": stage_rows,
        "points_chart": bar_chart(categories, [(gettext("Points"), [row["points"] for row in by_stage])],
                                  title=gettext("Points by stage"), y_label=gettext("points"), value_format=points,
                                  height=220),
        "recipients_chart": bar_chart(categories, [(gettext("Recipients"), [row["recipients"] for row in by_stage])],
                                      title=gettext("Recipients by stage"), y_label=gettext("customers"),
                                      height=220),
    }
    excluded = run.excluded or {}
    if excluded.get("reasons") is not None:
        rows = [{**row, "label": reason_label(row["reason"])} for row in excluded["reasons"]]
        display.update(
            reason_rows=rows, excluded=excluded,
            excluded_lines=sum(row["lines"] for row in rows), excluded_yen=sum(row["yen"] for row in rows),
            reasons_chart=hbar_chart(
                [(row["label"], row["lines"]) for row in rows], title=gettext("Excluded lines by reason"),
                x_label=gettext("bill lines"), extra_columns=[(gettext("Amount"), [yen(row["yen"]) for row in rows])],
                desc=gettext("Each line is counted once, under the first reason that applies, in this order.")),
        )
    return display


def campaign_points_per_day(*, campaign: Campaign, start: date, end: date) -> dict[date, tuple[int, int]]:
    """{business day: (points granted, points the same rewards would have given without the cap)} from the
    campaign's rewards granted from `start` to `end` (business days, inclusive; reversed ones left out).
    One GROUP BY query over those days only (the reward_created index), never the campaign's whole history."""
    zone = business_zone()
    uncapped = Floor(ExpressionWrapper(F("amount") * F("rate") / 100, output_field=DecimalField()))
    rows = (CampaignReward.objects.filter(campaign=campaign, reversed_at__isnull=True,
                                          created_at__gte=datetime.combine(start, time.min, tzinfo=zone),
                                          created_at__lt=datetime.combine(end + timedelta(days=1), time.min,
                                                                          tzinfo=zone))
            .annotate(day=TruncDate("created_at", tzinfo=zone)).values("day")
            .annotate(granted=Sum("points"), uncapped=Sum(uncapped)).order_by("day"))
    return {row["day"]: (int(row["granted"] or 0), int(row["uncapped"] or 0)) for row in rows}


def campaign_points_chart(campaign: Campaign, *, now: datetime | None = None) -> SafeString | str:
    """Points granted per day (business days, zeros included) over the last CHART_DAYS days up to today, or,
    for a campaign long over, up to SETTLE_LAG_DAYS after its end: its bills settle in the month after the
    one they bill, so its grants come mostly after it ends. With a per-customer cap, also what the same
    rewards would have given without it, and how many customers reached it."""
    if campaign.pk is None:
        return "\u2014"
    end = min(business_date(now or timezone.now()), business_date(campaign.ends_at) + timedelta(days=SETTLE_LAG_DAYS))
    start = max(business_date(campaign.starts_at), end - timedelta(days=CHART_DAYS - 1))
    if end < start:
        return gettext("The campaign has not started: nothing granted yet.")
    per_day = campaign_points_per_day(campaign=campaign, start=start, end=end)
    days = [start + timedelta(days=i) for i in range((end - start).days + 1)]
    series = [(gettext("Points granted"), [per_day.get(day, (0, 0))[0] for day in days])]
    desc = gettext("%(total)s granted from %(start)s to %(end)s.") % {
        "total": points(sum(granted for granted, _u in per_day.values())), "start": start.isoformat(),
        "end": end.isoformat()}
    if campaign.upper_limit is not None:
        series.append((gettext("Without the cap"), [per_day.get(day, (0, 0))[1] for day in days]))
        at_cap = CampaignBudget.objects.filter(campaign=campaign, points__gte=campaign.upper_limit).count()
        desc += " " + gettext("Cap: %(cap)s per customer; %(n)s customer(s) have reached it.") % {
            "cap": points(campaign.upper_limit), "n": number(at_cap)}
    chart = line_chart(series, title=gettext("Points granted per day"), y_label=gettext("points"),
                       x_labels=[day.strftime("%m-%d") for day in days], value_format=number, desc=desc)
    return format_html('{}<p class="help">{}</p>', chart, desc)
