"""What operators see at a glance: panels on the admin index, and the operations page.

Apps register what they show, so this core module imports no app:
- `register_panel(title, rows)`: rows of (label, value, url) on the admin index;
- `register_chart(title, charts)`: `charts(hours=...)` returns `Chart`s for the operations page, one point per
  hour of the last 24 (the inbox's are below; LINE's come from line_integration's selectors).

The operations page's figures are `mercari_ops.common.metrics.snapshot()`, the same function /metrics serves
its gauges from: the page and Prometheus never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import PermissionDenied
from django.db.models import Count, Max, Min
from django.db.models.functions import TruncHour
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

logger = logging.getLogger(__name__)

PANELS: list[tuple[str, Callable[[], list[tuple[str, object, str]]]]] = []
# Who may open the operations page: the inbox's operators (and superusers).
OPERATIONS_PERMISSION = "inbox.view_inboxevent"
HOURS = 24


def register_panel(title: str, rows: Callable[[], list[tuple[str, object, str]]]) -> None:
    PANELS.append((title, rows))


def inbox_rows() -> list[tuple[str, object, str]]:
    from django.urls import reverse

    from mercari_ops.inbox.models import DeadLetter, InboxEvent

    by_status = dict(
        InboxEvent.objects.filter(status__in=["retry", "waiting", "dead"]).values_list("status")
        .annotate(n=Count("id")).values_list("status", "n")
    )
    base = reverse("admin:inbox_inboxevent_changelist") + "?status__exact="
    return [
        (_("Events retrying"), by_status.get("retry", 0), base + "retry"),
        (_("Events waiting for another event"), by_status.get("waiting", 0), base + "waiting"),
        (_("Dead events (need an operator)"), by_status.get("dead", 0), base + "dead"),
        (_("Open dead letters (bad bodies)"), DeadLetter.objects.filter(status="open").count(),
         reverse("admin:inbox_deadletter_changelist") + "?status__exact=open"),
    ]


register_panel(gettext_lazy("Event inbox"), inbox_rows)


# --- charts ------------------------------------------------------------------------------------------


@dataclass
class Chart:
    """One chart's data; the page draws it with mercari_ops.common.charts (line or bar)."""

    title: str
    y_label: str
    series: list[tuple[str, list[int | float | None]]]
    x_labels: list[str]
    kind: str = "line"  # or "bar"
    stacked: bool = False
    limit: tuple[str, int | float] | None = None
    thresholds: list[tuple[str, int | float]] = field(default_factory=list)
    desc: str = ""


CHARTS: list[tuple[str, Callable[..., list[Chart]]]] = []


def register_chart(title: str, charts: Callable[..., list[Chart]]) -> None:
    """`charts(hours=[start of each hour, oldest first])` -> the app's charts for the operations page."""
    CHARTS[:] = [(t, c) for t, c in CHARTS if t != title] + [(title, charts)]


def hours_window(now: datetime | None = None, hours: int = HOURS) -> list[datetime]:
    """The starts of the last `hours` hours (the current one last), in the business time zone."""
    local = timezone.localtime(now or timezone.now())
    current = local.replace(minute=0, second=0, microsecond=0)
    return [current - timedelta(hours=hours - 1 - i) for i in range(hours)]


def hour_labels(hours: Sequence[datetime]) -> list[str]:
    return [timezone.localtime(hour).strftime("%H:00") for hour in hours]


def id_since(queryset, *, field_name: str, since: datetime, after: int | None = None) -> int | None:
    """The smallest primary key whose row has `field_name` >= since, on a table whose rows are stamped when
    inserted (the time grows with the key). A binary search over the primary key: about log2(rows) index
    probes, where filtering the unindexed time column would read the whole table. `after`: a key known to
    be older, to search from. None when no row is that recent."""
    rows = queryset.order_by()
    bounds = rows.aggregate(lo=Min("pk"), hi=Max("pk"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None:
        return None

    def first_at_or_after(key: int) -> tuple[int, datetime | None]:
        return rows.filter(pk__gte=key).order_by("pk").values_list("pk", field_name)[:1][0]

    last = rows.filter(pk=hi).values_list(field_name, flat=True)[0]
    if last is None or last < since:
        return None
    lo = max(lo, after) if after is not None else lo
    while lo < hi:  # the smallest key x whose first row at or after x is recent enough
        mid = (lo + hi) // 2
        _pk, value = first_at_or_after(mid)
        if value is not None and value >= since:
            hi = mid
        else:
            lo = mid + 1
    return first_at_or_after(lo)[0]


# Events accepted per topic in each finished hour, with the first key counted from: a finished hour's rows do
# not change, so it is counted once per process, not at every page view. Entries from before the window's
# first key (rows since deleted, or another test's) are not used.
_accepted_counted: dict[datetime, tuple[int, dict[str, int]]] = {}
NEEDS_OPERATOR = ("waiting", "retry", "dead")


def _accepted_per_hour(hours: Sequence[datetime], now: datetime) -> dict[datetime, dict[str, int]]:
    """{hour: {topic: events received}}, reading only the rows of the hours not counted yet (by primary key
    from the first of them: `id_since`)."""
    from mercari_ops.inbox.models import InboxEvent

    rows = InboxEvent.objects.order_by()
    accepted: dict[datetime, dict[str, int]] = {hour: {} for hour in hours}
    first = id_since(rows, field_name="received_at", since=hours[0])
    if first is None:
        return accepted
    for hour in hours:
        entry = _accepted_counted.get(hour)
        if entry is None or entry[0] < first:
            break
        accepted[hour] = entry[1]
    else:
        return accepted
    start = hour
    start_id = first if start == hours[0] else id_since(rows, field_name="received_at", since=start, after=first)
    if start_id is not None:
        firsts: dict[datetime, int] = {}
        for truncated, topic, n, lowest in (
                rows.filter(pk__gte=start_id, received_at__gte=start).annotate(hour=TruncHour("received_at"))
                .values_list("hour", "topic").annotate(n=Count("id"), lowest=Min("id"))):
            hour = timezone.localtime(truncated)
            accepted.setdefault(hour, {})[topic] = n
            firsts[hour] = min(firsts.get(hour, lowest), lowest)
    for hour in hours:
        # finished (with a minute for a transaction that began before its end): counted for good
        if hour >= start and hour + timedelta(hours=1, minutes=1) <= now:
            _accepted_counted[hour] = (firsts.get(hour, start_id) if start_id is not None else first, accepted[hour])
    for hour in [hour for hour in _accepted_counted if hour < hours[0]]:
        _accepted_counted.pop(hour, None)
    return accepted


def inbox_charts(*, hours: Sequence[datetime], now: datetime | None = None) -> list[Chart]:
    """Per topic, per hour received: events accepted, and of those the ones now waiting, retrying or dead.

    Accepted: primary-key ranges per hour (`_accepted_per_hour`). Waiting, retrying, dead: the few rows the
    partial index `inbox_needs_operator` holds."""
    from mercari_ops.inbox.models import InboxEvent

    accepted = _accepted_per_hour(hours, now or timezone.now())
    pending: dict[tuple[str, datetime, str], int] = {}
    for topic, hour, status, n in (
            InboxEvent.objects.order_by().filter(status__in=NEEDS_OPERATOR, received_at__gte=hours[0])
            .annotate(hour=TruncHour("received_at")).values_list("topic", "hour", "status").annotate(n=Count("id"))):
        pending[(topic, timezone.localtime(hour), status)] = n
    topics = sorted({topic for counts in accepted.values() for topic in counts} | {t for t, _h, _s in pending})
    charts = []
    for topic in topics:
        def per_hour(status: str, topic=topic) -> list[int]:
            return [pending.get((topic, hour, status), 0) for hour in hours]

        charts.append(Chart(
            title=_("Event inbox: %(topic)s, per hour received") % {"topic": topic}, y_label=_("events"),
            x_labels=hour_labels(hours),
            series=[(_("accepted"), [accepted[hour].get(topic, 0) for hour in hours]),
                    (_("waiting"), per_hour("waiting")), (_("retrying"), per_hour("retry")),
                    (_("dead"), per_hour("dead"))],
            desc=_("Events received each hour and, of those, the ones now waiting, retrying or dead."),
        ))
    return charts


register_chart(gettext_lazy("Event inbox"), inbox_charts)


def chart_render(chart: Chart) -> SafeString:
    from mercari_ops.common.charts import bar_chart, line_chart

    if chart.kind == "bar":
        return bar_chart(chart.x_labels, chart.series, title=chart.title, y_label=chart.y_label,
                         stacked=chart.stacked, desc=chart.desc)
    return line_chart(chart.series, title=chart.title, y_label=chart.y_label, x_labels=chart.x_labels,
                      thresholds=chart.thresholds, limit=chart.limit, desc=chart.desc)


# --- the page -----------------------------------------------------------------------------------------


def _labelled(labels: Sequence[str], values: dict) -> list[tuple[str, float]]:
    return [(", ".join(f"{name}={value}" for name, value in zip(labels, key, strict=False)), number)
            for key, number in sorted(values.items())]


def _age(seconds: float) -> str:
    if seconds < 1:
        return _("just now")
    if seconds < 120:
        return _("%(n)d s ago") % {"n": seconds}
    if seconds < 2 * 3600:
        return _("%(n)d min ago") % {"n": seconds // 60}
    if seconds < 2 * 86400:
        return _("%(n)d h ago") % {"n": seconds // 3600}
    return _("%(n)d days ago") % {"n": seconds // 86400}


def timestamp_shown(value: float | None, now: datetime | None = None) -> str:
    """A `*_timestamp_seconds` value (Unix seconds) as people read it: local time (TIME_ZONE, Japan's) and
    age, "2026-12-05 21:12:03 (12 s ago)"; 0 is "never" (nothing recorded yet)."""
    if not value:
        return _("never")
    now = now or timezone.now()
    at = datetime.fromtimestamp(value, tz=timezone.get_current_timezone())
    age = (now - at).total_seconds()
    when = at.strftime("%Y-%m-%d %H:%M:%S")
    if age < 0:
        future = _("in the future")  # outside the f-string: makemessages finds it
        return f"{when} ({future})"
    return f"{when} ({_age(age)})"


def metric_rows(now: datetime | None = None) -> list[dict]:
    """The scrape gauges now, one row per gauge: name, what it is, and its value(s), from `snapshot()`.

    Each value is (labels, number, text): `text` is what the page shows instead of the number, for
    timestamps (`*_timestamp_seconds`: local time and age), else "".
    """
    from mercari_ops.common.metrics import scrape_gauges, snapshot

    values = snapshot()
    now = now or timezone.now()
    rows = []
    for gauge in scrape_gauges():
        value = values.get(gauge.name)
        if isinstance(value, dict):
            shown = _labelled(gauge.labels, value)
        else:
            shown = [("", value)] if value is not None else []
        is_timestamp = gauge.name.endswith("_timestamp_seconds")
        shown = [(labels, number, timestamp_shown(number, now) if is_timestamp else "") for labels, number in shown]
        rows.append({"name": gauge.name, "help": gauge.documentation, "values": shown,
                     "area": gauge.name.removeprefix("mercari_ops_").split("_", 1)[0]})
    return rows


def operations_sections(now: datetime | None = None) -> list[tuple[str, list[SafeString]]]:
    """(title, rendered charts) per registered source; a failing source is logged and left out."""
    hours = hours_window(now)
    sections = []
    for title, charts in CHARTS:
        try:
            sections.append((title, [chart_render(chart) for chart in charts(hours=hours)]))
        except Exception:  # one app's broken chart must not take the page down
            logger.exception("operations page: the charts of %s failed", title)
    return sections


def operations_allowed(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(OPERATIONS_PERMISSION))


def _operations_view(request):
    from django.contrib import admin

    if not operations_allowed(request.user):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": gettext_lazy("Operations"),
        "metric_rows": metric_rows(),
        "sections": operations_sections(),
        "generated_at": timezone.localtime(),
    }
    return TemplateResponse(request, "admin/operations.html", context)


def operations_view(request):
    """The operations page (admin login required; the inbox's view permission)."""
    from django.contrib import admin

    return admin.site.admin_view(_operations_view)(request)
