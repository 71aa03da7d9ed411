"""The customer page of the admin in words people read: metric names, stage names, yen, readable reasons,
and 24 months of totals (zeros included) charted against the stage thresholds of the rules in force.

The charts show, for each month, the total over the rules window ending that month: that is the number a
stage threshold is compared with, so a line crossing a threshold line is a stage reached.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import date, datetime

from django.contrib import admin
from django.db.models import Sum
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.business_time import business_local, month_shift
from mercari_ops.common.charts import line_chart
from mercari_ops.common.formatting import number, yen

from .models import Customer
from .rules import METRICS, RuleSet, metrics_add, metrics_empty, window_start
from .selectors import customer_explain, rules_active, rules_guess, stage_label

MONTHS_SHOWN = 24
METRIC_LABELS = {
    "buy_amount": _("Purchase amount (¥)"), "buy_count": _("Purchases (count)"),
    "sell_amount": _("Sales amount (¥)"), "sell_count": _("Sales (count)"),
    "pay_amount": _("Payment amount (¥)"), "pay_count": _("Payments (count)"),
}
AMOUNT_METRICS = tuple(m for m in METRICS if m.endswith("_amount"))
COUNT_METRICS = tuple(m for m in METRICS if m.endswith("_count"))
TRIGGERS = {"event": _("an activity event"), "nightly": _("the nightly window check"),
            "rules": _("new stage rules"), "rebucket": _("months re-counted in Japan time")}
COMBINE = {"all": _("every threshold"), "any": _("at least one threshold")}


def metric_label(metric: str) -> str:
    return str(METRIC_LABELS.get(metric, metric))


def metric_value(metric: str, value) -> str:
    return yen(value) if metric.endswith("_amount") else number(value)


def threshold_text(check: dict) -> str:
    """'Purchase amount (¥): ¥60,000 of ¥50,000, met' or '..., not met (¥12,000 to go)'."""
    metric, value, threshold = check["metric"], check.get("value", 0), check["threshold"]
    met = check.get("met", value >= threshold)
    state = gettext("met") if met else gettext("not met (%(missing)s to go)") % {
        "missing": metric_value(metric, threshold - value)}
    return gettext("%(metric)s: %(value)s of %(threshold)s, %(state)s") % {
        "metric": metric_label(metric), "value": metric_value(metric, value),
        "threshold": metric_value(metric, threshold), "state": state}


def metrics_text(metrics: dict) -> str:
    return ", ".join(f"{metric_label(m)} {metric_value(m, metrics[m])}" for m in METRICS if m in metrics)


# --- 24 months --------------------------------------------------------------------------------------


def months_series(*, customer: Customer, ruleset: RuleSet | None = None, now: datetime | None = None,
                  months: int = MONTHS_SHOWN) -> list[dict]:
    """The last `months` business months, oldest first, zeros for months without activity: each with its
    own totals and the totals over the rules window ending that month. One query."""
    ruleset = ruleset or rules_active()
    now = now or timezone.now()
    first_shown = window_start(now, months)
    first_needed = month_shift(first_shown, -(ruleset.window_months - 1))
    per_month: dict[date, dict[str, int]] = defaultdict(metrics_empty)
    for month, kind, amount, count in (customer.monthly_totals.filter(month__gte=first_needed)
                                       .values_list("month", "kind").annotate(Sum("amount"), Sum("count"))
                                       .order_by()):
        metrics_add(per_month[month], kind, int(amount or 0), int(count or 0))
    window_from = window_start(now, ruleset.window_months)
    rows = []
    for i in range(months):
        month = month_shift(first_shown, i)
        window = metrics_empty()
        for back in range(ruleset.window_months):
            for metric, value in per_month.get(month_shift(month, -back), {}).items():
                window[metric] += value
        rows.append({"month": month, "in_window": month >= window_from, "metrics": per_month.get(month) or
                     metrics_empty(), "window": window})
    return rows


def _thresholds(ruleset: RuleSet, metrics: tuple[str, ...], *, several: bool) -> list[tuple[str, int]]:
    found = []
    for rule in ruleset.stages:
        for metric, value in rule.thresholds.items():
            if metric in metrics:
                label = stage_label(rule.stage, ruleset=ruleset)
                found.append((f"{label}: {metric_label(metric)}" if several else label, value))
    return found


def monthly_charts(rows: list[dict], ruleset: RuleSet) -> list[SafeString]:
    """Two line charts (amounts in yen, counts): window totals month by month against the thresholds."""
    x_labels = [row["month"].strftime("%Y-%m") for row in rows]
    charts = []
    for metrics, title, y_label, fmt in (
            (AMOUNT_METRICS, gettext("Amounts over the rules window, month by month"), gettext("yen"), yen),
            (COUNT_METRICS, gettext("Counts over the rules window, month by month"), gettext("count"), number)):
        used = [m for m in metrics if any(m in rule.thresholds for rule in ruleset.stages)] or list(metrics)
        desc = gettext("Each point is the total of the %(months)s months of the rules window ending that month; "
                       "the dashed lines are the stage thresholds of rules v%(version)s.") % {
            "months": ruleset.window_months, "version": ruleset.version}
        charts.append(line_chart([(metric_label(m), [row["window"][m] for row in rows]) for m in used],
                                 title=title, y_label=y_label, x_labels=x_labels, value_format=fmt, desc=desc,
                                 thresholds=_thresholds(ruleset, tuple(used), several=len(used) > 1)))
    return charts


def monthly_table(rows: list[dict]) -> SafeString:
    """Each month's own totals, newest first, every month listed."""
    head = format_html_join("", '<th scope="col">{}</th>', ((metric_label(m),) for m in METRICS))
    body = format_html_join("", '<tr><th scope="row">{}</th><td>{}</td>{}</tr>', (
        (row["month"].strftime("%Y-%m"), gettext("yes") if row["in_window"] else gettext("no"),
         format_html_join("", "<td>{}</td>", ((metric_value(m, row["metrics"][m]),) for m in METRICS)))
        for row in reversed(rows)))
    return format_html('<table class="monthly-totals"><caption>{}</caption><thead><tr><th scope="col">{}</th>'
                       '<th scope="col">{}</th>{}</tr></thead><tbody>{}</tbody></table>',
                       gettext("Monthly totals (last %(n)s months)") % {"n": len(rows)}, gettext("month"),
                       gettext("in the rules window"), head, body)


# --- stages and their reasons ------------------------------------------------------------------------


def _when(text: str | None) -> str:
    try:
        return business_local(datetime.fromisoformat(text)).strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(text or "")


def _stage_part(part: dict, verb: str, ruleset: RuleSet) -> str:
    label = stage_label(part.get("stage"), ruleset=ruleset)
    if "note" in part:
        return f"{verb} {label}: {part['note']}"
    checks = "; ".join(threshold_text(check) for check in part.get("thresholds", []))
    return f"{verb} {label} ({COMBINE.get(part.get('combine'), part.get('combine'))}): {checks}"


def change_reason_lines(reason: dict | None, *, ruleset: RuleSet | None = None) -> list[str]:
    """A stage change's reason (loyalty.rules.change_reason or a pin's) as sentences, nothing cut off."""
    if not isinstance(reason, dict):
        return [str(reason)] if reason else []
    ruleset = ruleset or rules_active()
    reason, lines = dict(reason), []
    if "trigger" in reason:
        trigger = reason.pop("trigger")
        lines.append(gettext("Triggered by %(trigger)s.") % {"trigger": TRIGGERS.get(trigger, trigger)})
    if "reached" in reason:
        lines.append(_stage_part(reason.pop("reached"), gettext("Reached"), ruleset))
    if "lost" in reason:
        lines.append(_stage_part(reason.pop("lost"), gettext("Lost"), ruleset))
    window, totals = reason.pop("window", None), reason.pop("totals", None)
    if totals:
        span = gettext(" (%(months)s months from %(start)s)") % {
            "months": window.get("months"), "start": window.get("from")} if isinstance(window, dict) else ""
        lines.append(gettext("Window totals%(window)s: %(totals)s.") % {"window": span,
                                                                        "totals": metrics_text(totals)})
    reason.pop("rules_version", None)  # shown in its own column
    floor = reason.pop("floor", None)
    if "pin_id" in reason or "expired_at" in reason:
        by, note = reason.pop("by", ""), reason.pop("reason", "") or reason.pop("revoke_reason", "")
        if "expired_at" in reason:
            lines.append(gettext("Pin at %(floor)s expired at %(at)s.") % {
                "floor": stage_label(floor, ruleset=ruleset), "at": _when(reason.pop("expired_at"))})
        elif "expires_at" in reason:
            lines.append(gettext("Pinned at %(floor)s by %(by)s until %(until)s.") % {
                "floor": stage_label(floor, ruleset=ruleset), "by": by, "until": _when(reason.pop("expires_at"))})
        else:
            lines.append(gettext("Pin at %(floor)s revoked by %(by)s.") % {
                "floor": stage_label(floor, ruleset=ruleset), "by": by})
        if note:
            lines.append(gettext("Note: %(note)s") % {"note": note})
        reason.pop("pin_id", None)
    elif floor is not None:
        reason["pin_floor"] = floor
    for key in ("rules_stage", "pin_floor"):
        if reason.get(key) is not None:
            name = gettext("Rules stage") if key == "rules_stage" else gettext("Pin floor")
            lines.append(f"{name}: {stage_label(reason.pop(key), ruleset=ruleset)}")
    lines += [f"{key}: {json.dumps(value, ensure_ascii=False, default=str)}" for key, value in sorted(reason.items())]
    return lines


def change_reason_html(reason, *, ruleset: RuleSet | None = None) -> SafeString:
    return format_html_join(mark_safe("<br>"), "{}", ((line,) for line in
                                                         change_reason_lines(reason, ruleset=ruleset)))


def customer_why_context(*, customer: Customer, now: datetime | None = None) -> dict:
    """Everything the "why this stage" page shows, in readable form."""
    explain = customer_explain(customer=customer, now=now)
    ruleset = explain["ruleset"]
    rows = months_series(customer=customer, ruleset=ruleset, now=now)
    return {
        "explain": explain,
        "labels": {"effective": stage_label(explain["effective_stage"], ruleset=ruleset),
                   "rules": stage_label(customer.rules_stage, ruleset=ruleset),
                   "evaluated": stage_label(explain["evaluated_stage"], ruleset=ruleset),
                   "pin": stage_label(customer.pin_floor, ruleset=ruleset) if customer.pin_floor else None},
        "window_rows": [(metric_label(m), metric_value(m, explain["metrics"][m]),
                         metric_value(m, explain["lifetime"][m])) for m in METRICS],
        "stages": [{"label": stage_label(s["rule"].stage, ruleset=ruleset), "met": s["met"],
                    "combine": COMBINE.get(s["rule"].combine, s["rule"].combine),
                    "checks": [threshold_text(check) for check in s["checks"]]} for s in explain["stages"]],
        "charts": monthly_charts(rows, ruleset),
        "months_table": monthly_table(rows),
        "pins": [{"pin": p, "floor": stage_label(p.floor, ruleset=ruleset)} for p in explain["pins"]],
        "changes": [{"change": c, "from": stage_label(c.from_stage, ruleset=ruleset),
                     "to": stage_label(c.to_stage, ruleset=ruleset),
                     "reason": change_reason_html(c.reason, ruleset=ruleset)} for c in explain["changes"]],
    }


# --- the customers list ------------------------------------------------------------------------------


def stage_list_filter(field: str, title: str) -> type[admin.SimpleListFilter]:
    """A list filter offering the stages of the rules in force by name ("Silver (20)") for `field`."""

    class StageFilter(admin.SimpleListFilter):
        parameter_name = field

        def lookups(self, request, model_admin):
            ruleset = rules_active()
            return [(rule.stage, stage_label(rule.stage, ruleset=ruleset)) for rule in ruleset.stages]

        def queryset(self, request, queryset):
            value = self.value()
            return queryset.filter(**{field: int(value)}) if value and value.isdigit() else queryset

    StageFilter.title = title
    return StageFilter


def stage_label_cheap(stage: int | None) -> str:
    """stage_label with the rules this process read last (no query per row of a list)."""
    return stage_label(stage, ruleset=rules_guess())
