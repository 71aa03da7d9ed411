"""Charts as server-side SVG: drawn from our own data on our own server, no JavaScript library, no CDN.

Each function returns one `<figure>` holding an inline `<svg role="img">` (with `<title>` and `<desc>`,
axis labels, value labels where they fit) and, beside it, the same numbers as a `<table>` a person or a
screen reader can read. Every label is escaped (format_html); the output is well-formed XML, so tests
parse it with xml.etree. Numbers are integers with thousands separators unless the caller passes a
`value_format` (mercari_ops.common.formatting.yen / points).

    line_chart([("Points", [120, 80, 0])], title=..., y_label="pt", x_labels=["12-01", "12-02", "12-03"],
               thresholds=[("Silver (20)", 50_000)], limit=("Cap", 10_000))
    bar_chart(["Regular (10)", "Silver (20)"], [("Points", [1500, 200])], title=..., y_label=...)
    hbar_chart([("Unknown merchant", 263), ("Channel", 4284)], title=..., x_label="lines",
               extra_columns=[("Amount", ["¥1,234", "¥56,789"])])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _

from .formatting import number

SVG_NS = "http://www.w3.org/2000/svg"
# Okabe-Ito: told apart by colour-blind readers too (its yellow left out: unreadable on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000")
THRESHOLD_COLOUR = "#666666"
LIMIT_COLOUR = "#B00020"
FONT = "font:11px sans-serif"
CHAR_WIDTH = 6.5  # of an 11px sans-serif character, for laying out labels without a font engine

Number = int | float
Formatter = Callable[[object], str]
_ids = itertools.count(1)


def _series_list(series) -> list[tuple[str, list[Number | None]]]:
    items = series.items() if isinstance(series, Mapping) else series
    return [(str(name), list(values)) for name, values in items]


def _join(parts) -> SafeString:
    return mark_safe("".join(str(part) for part in parts))  # every part comes from format_html


def _f(x: float) -> str:
    return f"{x:.1f}"


class _Scale:
    """Linear value -> pixel scale on [lo, hi], hi and lo rounded out to 1/2/5 x 10^k steps."""

    def __init__(self, values: Sequence[Number], pixels: float, ticks: int = 4):
        lo, hi = min([0, *values]), max([0, *values])
        span = (hi - lo) or 1
        raw = span / ticks
        magnitude = 10 ** math.floor(math.log10(raw))
        step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
        if all(isinstance(v, int) for v in values):
            step = max(1, math.ceil(step))
        self.step = step
        self.lo = math.floor(lo / step) * step
        self.hi = max(math.ceil(hi / step) * step, self.lo + step)
        self.pixels = pixels

    def length(self, value: Number) -> float:
        """Pixels from the lowest value (bars are drawn from the zero line, see `zero`)."""
        return (value - self.lo) / (self.hi - self.lo) * self.pixels

    @property
    def zero(self) -> float:
        return self.length(0)

    def ticks(self) -> list[Number]:
        count = round((self.hi - self.lo) / self.step)
        return [self.lo + i * self.step for i in range(count + 1)]


def _figure(*, chart_id: str, title: str, desc: str, width: int, height: int, body, table) -> SafeString:
    svg = format_html(
        '<svg xmlns="{}" role="img" width="{}" height="{}" viewBox="0 0 {} {}" aria-labelledby="{}-t {}-d" '
        'style="max-width:100%;height:auto;{}"><title id="{}-t">{}</title><desc id="{}-d">{}</desc>{}</svg>',
        SVG_NS, width, height, width, height, chart_id, chart_id, FONT, chart_id, title, chart_id, desc, _join(body))
    return format_html('<figure class="ops-chart" id="{}" style="margin:0 0 1.5em 0">'
                       '<figcaption style="font-weight:bold;margin-bottom:4px">{}</figcaption>{}'
                       '<details class="ops-chart-data"><summary>{}</summary>{}</details></figure>',
                       chart_id, title, svg, _("Data table: %(title)s") % {"title": title}, table)


def _table(caption: str, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> SafeString:
    head = format_html_join("", '<th scope="col">{}</th>', ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", (
        (format_html('<th scope="row">{}</th>{}', row[0], format_html_join("", "<td>{}</td>",
                                                                              ((c,) for c in row[1:]))),)
        for row in rows))
    return format_html("<table><caption>{}</caption><thead><tr>{}</tr></thead><tbody>{}</tbody></table>",
                       caption, head, body)


def _y_axis(scale: _Scale, *, left: float, top: float, right: float, y_label: str, fmt: Formatter):
    """Grid lines with tick labels, and the axis label written upwards along the left edge."""
    parts = []
    for tick in scale.ticks():
        y = top + scale.pixels - scale.length(tick)
        parts.append(format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e0e0e0"/>'
                                 '<text x="{}" y="{}" text-anchor="end" fill="#333">{}</text>',
                                 _f(left), _f(right), _f(y), _f(y), _f(left - 4), _f(y + 4), fmt(tick)))
    middle = top + scale.pixels / 2
    parts.append(format_html('<text class="axis-label" x="12" y="{}" text-anchor="middle" '
                             'transform="rotate(-90 12 {})" fill="#333">{}</text>', _f(middle), _f(middle), y_label))
    return parts


def _legend(names: Sequence[str], *, left: float, y: float):
    parts, x = [], left
    for index, name in enumerate(names):
        colour = PALETTE[index % len(PALETTE)]
        parts.append(format_html('<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                                 '<text x="{}" y="{}" fill="#333">{}</text>', _f(x), _f(y - 9), colour, _f(x + 14),
                                 _f(y), name))
        x += 24 + CHAR_WIDTH * len(name)
    return parts


def _left_margin(scale: _Scale, fmt: Formatter) -> float:
    return 28 + CHAR_WIDTH * max(len(fmt(t)) for t in scale.ticks())


def _reference(value, label: str, kind: str, fmt: Formatter) -> tuple[str, Number, str, str]:
    if isinstance(value, tuple):
        label, value = value
    colour, dash = (LIMIT_COLOUR, "6 3") if kind == "limit" else (THRESHOLD_COLOUR, "4 3")
    return str(label), value, colour, dash


def line_chart(series, *, title: str, y_label: str, x_labels: Sequence[str], thresholds=(), limit=None,
               width: int = 720, height: int = 240, value_format: Formatter = number, desc: str = "") -> SafeString:
    """Several series over the same x labels (None = no value: the line breaks there); horizontal
    reference lines with their labels: `thresholds` [(label, value)], and `limit` (a value or (label, value))."""
    chart_id = f"ops-chart-{next(_ids)}"
    data = _series_list(series)
    x_labels = [str(x) for x in x_labels]
    references = [_reference(t, "", "threshold", value_format) for t in thresholds]
    if limit is not None:
        references.append(_reference(limit, _("limit"), "limit", value_format))
    values = [v for _name, vs in data for v in vs if v is not None] + [value for _l, value, _c, _d in references]
    top, bottom, right = 30, 28, width - 12
    scale = _Scale(values or [0], height - top - bottom)
    left = _left_margin(scale, value_format)
    plot_w = right - left
    n = len(x_labels)

    def x_at(i: int) -> float:
        return left + (plot_w / 2 if n == 1 else i * plot_w / max(n - 1, 1))

    def y_at(v: Number) -> float:
        return top + scale.pixels - scale.length(v)

    body = _y_axis(scale, left=left, top=top, right=right, y_label=y_label, fmt=value_format)
    every = max(1, math.ceil(n / max(1, plot_w // 52)))
    body += [format_html('<text x="{}" y="{}" text-anchor="middle" fill="#333">{}</text>', _f(x_at(i)),
                         _f(height - bottom + 16), label) for i, label in enumerate(x_labels) if i % every == 0]
    # Lines at the same value share one label; a label that would overprint another goes to the left end.
    merged: dict[tuple, list[str]] = {}
    for label, value, colour, dash in references:
        merged.setdefault((value, colour, dash), []).append(label)
    placed: dict[str, list[float]] = {"end": [], "start": []}
    for (value, colour, dash), labels in merged.items():
        y = y_at(value)
        side = "end" if all(abs(y - other) >= 12 for other in placed["end"]) else "start"
        placed[side].append(y)
        body.append(format_html(
            '<line class="reference" x1="{}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-dasharray="{}"/>'
            '<text x="{}" y="{}" text-anchor="{}" fill="{}">{}</text>', _f(left), _f(right), _f(y), _f(y), colour,
            dash, _f(right - 2 if side == "end" else left + 4), _f(y - 3), side, colour,
            f"{' · '.join(labels)}: {value_format(value)}"))
    for index, (name, vs) in enumerate(data):
        colour = PALETTE[index % len(PALETTE)]
        runs, run = [], []
        for i, v in enumerate(vs[:n]):
            if v is None:
                runs, run = runs + ([run] if run else []), []
            else:
                run.append((x_at(i), y_at(v)))
        runs += [run] if run else []
        for points in runs:
            body.append(format_html('<polyline class="series" fill="none" stroke="{}" stroke-width="2" points="{}"/>',
                                    colour, " ".join(f"{_f(x)},{_f(y)}" for x, y in points)))
        body += [format_html('<circle cx="{}" cy="{}" r="2.5" fill="{}"><title>{}</title></circle>', _f(x_at(i)),
                             _f(y_at(v)), colour, f"{name}, {x_labels[i]}: {value_format(v)}")
                 for i, v in enumerate(vs[:n]) if v is not None]
    body += _legend([name for name, _vs in data], left=left, y=16)
    if not data or not n:
        body.append(format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>', _f(left + plot_w / 2),
                                _f(top + scale.pixels / 2), _("No data")))
    summary = "; ".join(f"{label}: {value_format(value)}" for label, value, _c, _d in references)
    full_desc = " ".join(filter(None, [desc, summary and _("Reference lines: %(lines)s.") % {"lines": summary}]))
    rows = [[x, *[value_format(vs[i]) if i < len(vs) else "" for _name, vs in data]] for i, x in enumerate(x_labels)]
    rows += [[label, *[value_format(value)] * len(data)] for label, value, _c, _d in references]
    table = _table(title, ["", *[name for name, _vs in data]], rows)
    return _figure(chart_id=chart_id, title=title, desc=full_desc or title, width=width, height=height, body=body,
                   table=table)


def bar_chart(categories: Sequence[str], series, *, title: str, y_label: str, stacked: bool = False,
              width: int = 720, height: int = 240, value_format: Formatter = number, desc: str = "") -> SafeString:
    """Vertical bars per category, one bar per series side by side (or stacked); bars are
    proportional to their values, with the value written above each bar where it fits."""
    chart_id = f"ops-chart-{next(_ids)}"
    data = _series_list(series)
    categories = [str(c) for c in categories]
    n, k = len(categories), max(1, len(data))

    def value(vs, i) -> Number:
        return (vs[i] if i < len(vs) else 0) or 0

    if stacked:
        values = [sum(value(vs, i) for _name, vs in data) for i in range(n)]
    else:
        values = [value(vs, i) for _name, vs in data for i in range(n)]
    top, bottom, right = 30, 28, width - 12
    scale = _Scale(values or [0], height - top - bottom)
    left = _left_margin(scale, value_format)
    group = (right - left) / max(n, 1)
    bar_w = min(group * 0.7 / (1 if stacked else k), 72)  # one category must not become a wall of colour
    body = _y_axis(scale, left=left, top=top, right=right, y_label=y_label, fmt=value_format)
    base = top + scale.pixels - scale.zero
    for i, category in enumerate(categories):
        x0 = left + i * group + (group - bar_w * (1 if stacked else k)) / 2
        stack = 0
        for j, (name, vs) in enumerate(data):
            v = value(vs, i)
            x = x0 if stacked else x0 + j * bar_w
            start = scale.length(stack) if stacked else scale.zero
            end = scale.length(stack + v) if stacked else scale.length(v)
            y, h = top + scale.pixels - max(start, end), abs(end - start)
            body.append(format_html(
                '<rect class="bar" data-value="{}" x="{}" y="{}" width="{}" height="{}" fill="{}">'
                '<title>{}</title></rect>', v, _f(x), _f(y), _f(bar_w), _f(h), PALETTE[j % len(PALETTE)],
                f"{category}, {name}: {value_format(v)}"))
            if not stacked and bar_w >= CHAR_WIDTH * len(value_format(v)) * 0.6:
                body.append(format_html('<text class="value" x="{}" y="{}" text-anchor="middle" fill="#333">{}'
                                        '</text>', _f(x + bar_w / 2), _f(y - 3), value_format(v)))
            stack += v
        if stacked:
            body.append(format_html('<text class="value" x="{}" y="{}" text-anchor="middle" fill="#333">{}</text>',
                                    _f(x0 + bar_w / 2), _f(top + scale.pixels - scale.length(stack) - 3),
                                    value_format(stack)))
        body.append(format_html('<text x="{}" y="{}" text-anchor="middle" fill="#333">{}</text>',
                                _f(left + (i + 0.5) * group), _f(base + 16), category))
    body += _legend([name for name, _vs in data], left=left, y=16)
    if not n:
        body.append(format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>', _f((left + right) / 2),
                                _f(top + scale.pixels / 2), _("No data")))
    headers = ["", *[name for name, _vs in data]] + ([_("Total")] if stacked and len(data) > 1 else [])
    rows = [[c, *[value_format(value(vs, i)) for _name, vs in data]]
            + ([value_format(sum(value(vs, i) for _name, vs in data))] if stacked and len(data) > 1 else [])
            for i, c in enumerate(categories)]
    return _figure(chart_id=chart_id, title=title, desc=desc or title, width=width, height=height, body=body,
                   table=_table(title, headers, rows))


def hbar_chart(items: Sequence[tuple[str, Number]], *, title: str, x_label: str, width: int = 720,
               bar_height: int = 18, value_format: Formatter = number,
               extra_columns: Sequence[tuple[str, Sequence[str]]] = (), desc: str = "") -> SafeString:
    """One horizontal bar per (label, value), longest first as given, e.g. excluded lines by reason.

    `extra_columns` [(header, texts)] add columns to the data table (e.g. the yen of each reason).
    """
    chart_id = f"ops-chart-{next(_ids)}"
    items = [(str(label), value or 0) for label, value in items]
    row_h, top, bottom = bar_height + 8, 8, 34
    height = top + max(1, len(items)) * row_h + bottom
    label_w = min(260.0, 16 + CHAR_WIDTH * max([len(label) for label, _v in items] or [4]))
    right = width - 12 - CHAR_WIDTH * max([len(value_format(v)) for _label, v in items] or [1])
    scale = _Scale([v for _label, v in items] or [0], right - label_w)
    body = []
    for tick in scale.ticks():
        x = label_w + scale.length(tick)
        body.append(format_html('<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#e0e0e0"/>'
                                '<text x="{}" y="{}" text-anchor="middle" fill="#333">{}</text>', _f(x), _f(x),
                                top, _f(height - bottom), _f(x), _f(height - bottom + 13), value_format(tick)))
    for i, (label, v) in enumerate(items):
        y = top + i * row_h + 4
        length = scale.length(v) - scale.zero
        body.append(format_html(
            '<text x="{}" y="{}" text-anchor="end" fill="#333">{}</text>'
            '<rect class="bar" data-value="{}" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>'
            '<text class="value" x="{}" y="{}" fill="#333">{}</text>',
            _f(label_w - 6), _f(y + bar_height - 5), label, v, _f(label_w + scale.zero), _f(y), _f(max(length, 0)),
            bar_height, PALETTE[0], f"{label}: {value_format(v)}", _f(label_w + scale.zero + max(length, 0) + 4),
            _f(y + bar_height - 5), value_format(v)))
    body.append(format_html('<text class="axis-label" x="{}" y="{}" text-anchor="middle" fill="#333">{}</text>',
                            _f((label_w + right) / 2), _f(height - 4), x_label))
    if not items:
        body.append(format_html('<text x="{}" y="{}" text-anchor="middle">{}</text>', _f((label_w + right) / 2),
                                _f(top + row_h / 2 + 4), _("No data")))
    headers = ["", x_label, *[header for header, _texts in extra_columns]]
    rows = [[label, value_format(v), *[texts[i] if i < len(texts) else "" for _header, texts in extra_columns]]
            for i, (label, v) in enumerate(items)]
    return _figure(chart_id=chart_id, title=title, desc=desc or title, width=width, height=height, body=body,
                   table=_table(title, headers, rows))


__all__ = ["bar_chart", "hbar_chart", "line_chart"]
