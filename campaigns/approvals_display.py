"""How a campaign change request reads to its approver: the backtest figures as tables and a chart, with
stage names, points as `12,345 pt`; diff values as the campaign form writes them (rates in %, the cap in
points, stages by name). Registered with the kinds (campaigns/approvals.py), so core stays app-agnostic.
"""

from __future__ import annotations

import re

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.selectors import stage_labels
from mercari_ops.common.charts import bar_chart
from mercari_ops.common.formatting import MISSING, number, points

from .models import Campaign

# the backtest totals an approver weighs, in reading order
FIGURES = (
    ("lines", _("bill lines"), number),
    ("lines_rewarded", _("lines rewarded"), number),
    ("recipients", _("recipients"), number),
    ("rewards", _("rewards"), number),
    ("points", _("points"), points),
    ("cap_hits", _("rewards cut by the cap"), number),
    ("customers_at_cap", _("customers at the cap"), number),
)
NOTES = ("backtest", "scope", "comparison_month", "newer", "proposed")
RATE_KEY = re.compile(r"^rates\.\d+\.rate$")
STAGE_KEY = re.compile(r"^rates\.\d+\.stage_(from|to)$|^user_filters\.stages?(\.\d+)?$")


def _signed(value, fmt) -> str:
    if not isinstance(value, int) or isinstance(value, bool):
        return MISSING
    return ("+" if value > 0 else "") + fmt(value)


def _table(css: str, caption: str, headers, rows) -> SafeString:
    head = format_html_join("", '<th scope="col" class="{}">{}</th>',
                            (("" if i == 0 else "numeric", h) for i, h in enumerate(headers)))
    body = format_html_join("", "<tr>{}</tr>", ((format_html(
        '<th scope="row">{}</th>{}', row[0], format_html_join("", '<td class="numeric">{}</td>',
                                                                ((cell,) for cell in row[1:]))),) for row in rows))
    return format_html('<table class="{}"><caption>{}</caption><thead><tr>{}</tr></thead><tbody>{}</tbody>'
                       "</table>", css, caption, head, body)


def _totals(figures: dict) -> SafeString | str:
    comparison = {row.get("figure"): row for row in figures.get("comparison") or []}
    if comparison:
        rows = [(label, fmt(comparison[key].get("now")), fmt(comparison[key].get("proposed")),
                 _signed((comparison[key].get("proposed") or 0) - (comparison[key].get("now") or 0), fmt))
                for key, label, fmt in FIGURES if key in comparison]
        return _table("campaign-backtest-totals", gettext("Backtest: the campaign now and as proposed"),
                      [gettext("figure"), gettext("now"), gettext("proposed"), gettext("change")], rows)
    rows = [(label, fmt(figures[key])) for key, label, fmt in FIGURES if key in figures]
    if not rows:
        return ""
    return _table("campaign-backtest-totals", gettext("Backtest"), [gettext("figure"), gettext("value")], rows)


def _by_stage(figures: dict) -> list:
    now = {row["stage"]: row for row in figures.get("by_stage") or [] if isinstance(row, dict)}
    has_proposed = "proposed_by_stage" in figures and isinstance(figures["proposed_by_stage"], list)
    proposed = {row["stage"]: row for row in figures.get("proposed_by_stage") or [] if isinstance(row, dict)}
    stages = sorted(set(now) | set(proposed))
    if not stages:
        return []
    labels = stage_labels(stages)
    names = [labels[stage] for stage in stages]

    def cell(rows, stage, key):
        return rows.get(stage, {}).get(key, 0)

    if has_proposed:
        headers = [gettext("stage"), gettext("recipients now"), gettext("recipients proposed"),
                   gettext("points now"), gettext("points proposed")]
        rows = [(labels[s], number(cell(now, s, "recipients")), number(cell(proposed, s, "recipients")),
                 points(cell(now, s, "points")), points(cell(proposed, s, "points"))) for s in stages]
        series = [(gettext("Now"), [cell(now, s, "points") for s in stages]),
                  (gettext("Proposed"), [cell(proposed, s, "points") for s in stages])]
    else:
        headers = [gettext("stage"), gettext("recipients"), gettext("rewards"), gettext("points")]
        rows = [(labels[s], number(cell(now, s, "recipients")), number(cell(now, s, "rewards")),
                 points(cell(now, s, "points"))) for s in stages]
        series = [(gettext("Points"), [cell(now, s, "points") for s in stages])]
    return [_table("campaign-backtest-stages", gettext("Recipients and points by stage"), headers, rows),
            bar_chart(names, series, title=gettext("Points by stage"), y_label=gettext("points"),
                      value_format=points, height=220)]


def render_preview(figures: dict) -> SafeString:
    """The approver's figures of a campaign request (campaigns.approvals.backtest_figures / change_figures)."""
    parts = []
    if figures.get("error"):
        parts.append(format_html('<p class="errornote">{}</p>', figures["error"]))
    labels = {"comparison_month": gettext("Month simulated")}
    for key in NOTES:
        value = figures.get(key)
        if isinstance(value, str) and value:
            label = labels.get(key)
            parts.append(format_html("<p><strong>{}:</strong> {}</p>", label, value) if label
                         else format_html("<p>{}</p>", value))
    parts.append(_totals(figures))
    parts.extend(_by_stage(figures))
    return format_html('<div class="change-figures">{}</div>', format_html_join("", "{}", ((p,) for p in parts if p)))


def format_value(key: str, value) -> str | None:
    """A campaign diff value as the form writes it; None leaves it to the generic formatting."""
    if key == "upper_limit":
        return points(value)
    if RATE_KEY.match(key):
        return f"{value}%"
    if key == "status" and value in Campaign.Status.values:
        return str(Campaign.Status(value).label)
    if STAGE_KEY.match(key) and isinstance(value, int) and not isinstance(value, bool):
        return stage_labels([value])[value]
    return None
