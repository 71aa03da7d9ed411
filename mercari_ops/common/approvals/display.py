"""How the change request page writes a diff and figures: changed fields only, values as an approver reads them.

A kind may format its own values (`format_value`, e.g. points, rates, stage names) and draw its own figures
(`render_preview`); what it leaves to core is written here: integers with separators, times in the business
time zone (not UTC ISO), JSON pretty-printed, lists of scalars as a comma list.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..admin_utils import pretty_json
from ..formatting import MISSING, number
from .registry import ChangeKind

ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
ABSENT = object()  # a leaf one side of the diff does not have


def _flatten(value, prefix: str = "") -> dict[str, object]:
    """{"rates.0.rate": "1.0", ...}: nested JSON as dotted keys, so a diff compares leaf by leaf."""
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value and all(isinstance(item, (dict, list)) for item in value):
        items = enumerate(value)
    else:
        return {prefix or "value": value}
    flat: dict[str, object] = {}
    for key, item in items:
        flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def diff_rows(before: dict | None, after: dict | None) -> list[tuple[str, object, object, bool]]:
    """(key, before, after, changed) for every leaf of either side, changed ones first (ABSENT: no such leaf)."""
    old, new = _flatten(before or {}), _flatten(after or {})
    keys = list(dict.fromkeys([*old, *new]))
    rows = [(key, old.get(key, ABSENT), new.get(key, ABSENT), old.get(key, ABSENT) != new.get(key, ABSENT))
            for key in keys]
    return sorted(rows, key=lambda row: not row[3])


def local_time_text(value: str) -> str | None:
    """An ISO timestamp as business-zone wall time ("2026-12-01 00:00 JST"); None when it is not one."""
    if not ISO_DATETIME.match(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if timezone.is_naive(moment):
        return f"{moment:%Y-%m-%d %H:%M}"
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M %Z}"


def value_text(value, *, key: str = "", kind: ChangeKind | None = None) -> str | SafeString:
    """One value as the approver reads it: the kind's formatting first, then the generic one."""
    if value is ABSENT or value is None:
        return MISSING
    if kind is not None and kind.format_value is not None:
        text = kind.format_value(key, value)
        if text is not None:
            return text
    if isinstance(value, bool):
        return _("yes") if value else _("no")
    if isinstance(value, int):
        return number(value)
    if isinstance(value, list) and all(not isinstance(item, (dict, list)) for item in value):
        return ", ".join(str(item) for item in value) or _("(none)")
    if isinstance(value, (dict, list)):
        return pretty_json(value) if value else _("(none)")
    if isinstance(value, str):
        return local_time_text(value) or value
    return str(value)


def _rows_html(rows, kind: ChangeKind | None) -> SafeString:
    return format_html_join("", '<tr class="{}"><th scope="row">{}</th><td>{}</td><td>{}</td></tr>', (
        ("changed" if changed else "same", key, value_text(old, key=key, kind=kind),
         value_text(new, key=key, kind=kind)) for key, old, new, changed in rows))


def _diff_table(rows, kind: ChangeKind | None, css: str) -> SafeString:
    return format_html('<table class="{}"><thead><tr><th scope="col">{}</th><th scope="col">{}</th>'
                       '<th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>',
                       css, _("field"), _("before"), _("after"), _rows_html(rows, kind))


def diff_html(before: dict | None, after: dict | None, kind: ChangeKind | None = None) -> str | SafeString:
    """The changed fields as a table; the unchanged ones folded away behind "Show all fields"."""
    rows = diff_rows(before, after)
    if not rows:
        return MISSING
    changed = [row for row in rows if row[3]]
    same = [row for row in rows if not row[3]]
    parts = [_diff_table(changed, kind, "change-diff") if changed
             else format_html("<p>{}</p>", _("No field differs."))]
    if same:
        parts.append(format_html('<details class="change-diff-all"><summary>{}</summary>{}</details>',
                                 _("Show all fields (%(n)s unchanged)") % {"n": len(same)},
                                 _diff_table(same, kind, "change-diff-same")))
    return format_html_join("", "{}", ((part,) for part in parts))
