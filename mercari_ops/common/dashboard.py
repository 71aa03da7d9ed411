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
        ("Events retrying", by_status.get("retry", 0), base + "retry"),
        ("Events waiting for another event", by_status.get("waiting", 0), base + "waiting"),
        ("Dead events (need an operator)", by_status.get("dead", 0), base + "dead"),
        ("Open dead letters (bad bodies)", DeadLetter.objects.filter(status="open").count(),
         reverse("admin:inbox_deadletter_changelist") + "?status__exact=open"),
    ]


register_panel("Event inbox", inbox_rows)


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


def id_since(queryset, *, field_name: str, since: datetime) -> int | None:
    """The smallest primary key whose row has `field_name` >= since, on a table whose rows are stamped when
    inserted (the time grows with the key). A binary search over the primary key: about log2(rows) index
    probes, where filtering the unindexed time column would read the whole table.
    None when no row is that recent."""
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
    while lo < hi:  # the smallest key x whose first row at or after x is recent enough
        mid = (lo + hi) // 2
        _pk, value = first_at_or_after(mid)
        if value is not None and value >= since:
            hi = mid
        else:
            lo = mid + 1
    return first_at_or_after(lo)[0]


def inbox_charts(*, hours: Sequence[datetime]) -> list[Chart]:
    """Per topic, per hour received: events accepted, and of those the ones now waiting, retrying or dead."""
    from mercari_ops.inbox.models import InboxEvent

    since = hours[0]
    first = id_since(InboxEvent.objects.all(), field_name="received_at", since=since)
    if first is None:
        return []
    counts: dict[str, dict[tuple[datetime, str], int]] = {}
    rows = (InboxEvent.objects.order_by().filter(pk__gte=first, received_at__gte=since)
            .annotate(hour=TruncHour("received_at")).values_list("topic", "hour", "status").annotate(n=Count("id")))
    for topic, hour, status, n in rows:
        counts.setdefault(topic, {})[(timezone.localtime(hour), status)] = n
    charts = []
    for topic in sorted(counts):
        by = counts[topic]

        def per_hour(*statuses, by=by):
            return [sum(n for (h, s), n in by.items() if h == hour and (not statuses or s in statuses))
                    for hour in hours]

        charts.append(Chart(
            title=_("Event inbox: %(topic)s, per hour received") % {"topic": topic}, y_label=_("events"),
            x_labels=hour_labels(hours),
            series=[(_("accepted"), per_hour()), (_("waiting"), per_hour("waiting")),
                    (_("retrying"), per_hour("retry")), (_("dead"), per_hour("dead"))],
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


def metric_rows() -> list[dict]:
    """The scrape gauges now, one row per gauge: name, what it is, and its value(s), from `snapshot()`."""
    from mercari_ops.common.metrics import scrape_gauges, snapshot

    values = snapshot()
    rows = []
    for gauge in scrape_gauges():
        value = values.get(gauge.name)
        if isinstance(value, dict):
            shown = _labelled(gauge.labels, value)
        else:
            shown = [("", value)] if value is not None else []
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
