"""Reads for the admin, the API and other apps (which read LINE accounts only through these)."""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Q
from django.db.models.functions import TruncHour, TruncMinute
from django.utils import timezone
from django.utils.translation import gettext as _

from mercari_ops.common.dashboard import Chart, hour_labels, id_since

from .models import LineLinkageUser, LineRequest, LineUser, OutboundMessage


def campaign_delivery_counts(*, limit: int = 200) -> list[dict]:
    """Braze deliveries per campaign: queued (incl. planned), sent, failed, skipped."""
    status = OutboundMessage.Status
    return list(
        OutboundMessage.objects.filter(kind=OutboundMessage.Kind.BRAZE).values("campaign_id")
        .annotate(queued=Count("id", filter=Q(status__in=[status.QUEUED, status.PLANNED])),
                  sent=Count("id", filter=Q(status=status.SENT)),
                  failed=Count("id", filter=Q(status=status.FAILED)),
                  skipped=Count("id", filter=Q(status=status.SKIPPED)),
                  total=Count("id"))
        .order_by("campaign_id")[:limit]
    )


def linkage_status_counts() -> dict[str, int]:
    rows = LineLinkageUser.objects.values("line_audience_status").annotate(n=Count("id"))
    return {row["line_audience_status"]: row["n"] for row in rows}


def line_user_linked(*, customer_id: str) -> bool:
    return LineUser.objects.filter(customer_id=customer_id, status=LineUser.Status.LINKED).exists()


def line_users_linked(*, customer_ids: Iterable[str]) -> set[str]:
    """Which of these customers have a linked LINE account: one query per 5,000 ids, none for no ids."""
    ids = list(customer_ids)
    linked: set[str] = set()
    for start in range(0, len(ids), 5000):
        linked.update(LineUser.objects.filter(customer_id__in=ids[start:start + 5000], status=LineUser.Status.LINKED)
                      .values_list("customer_id", flat=True))
    return linked


# --- the admin's operations page (mercari_ops/common/dashboard.py) ------------------------------------------


def line_ops_charts(*, hours: list[datetime]) -> list[Chart]:
    """The last hours of LINE traffic, one point per hour: requests per minute against the limit, 429s, and
    the outbound backlog. Rows are found by primary key from the window's first one (`id_since`): the time
    columns have no index, and the page must not read the whole table."""
    since = hours[0]
    # Requests made up to an hour before the window and sent in it are counted; older ones (retried through a
    # long outage) are not: the page must not read a second day of rows for them.
    oldest = since - timedelta(hours=1)
    labels = hour_labels(hours)
    index = {hour: i for i, hour in enumerate(hours)}

    def slot(moment) -> int | None:
        return index.get(timezone.localtime(moment).replace(minute=0, second=0, microsecond=0))

    busiest = {kind: [0] * len(hours) for kind in LineRequest.Kind.values}
    sent = {kind: [0] * len(hours) for kind in LineRequest.Kind.values}
    limited = [0] * len(hours)
    first = id_since(LineRequest.objects.all(), field_name="created_at", since=oldest)
    if first is not None:
        requests = LineRequest.objects.order_by().filter(pk__gte=first)
        for kind, minute, n in (requests.filter(sent_at__gte=since).annotate(minute=TruncMinute("sent_at"))
                                .values_list("kind", "minute").annotate(n=Count("id"))):
            i = slot(minute)
            if i is not None:
                busiest[kind][i] = max(busiest[kind][i], n)
                sent[kind][i] += n
        for created, n in (requests.filter(created_at__gte=since, last_status=429)
                           .annotate(hour=TruncHour("created_at")).values_list("hour").annotate(n=Count("id"))):
            if (i := slot(created)) is not None:
                limited[i] += n

    backlog = _backlog_per_hour(hours, oldest)
    per_minute = _("requests per minute")
    return [
        Chart(title=_("LINE requests per minute: the busiest minute of each hour"), y_label=per_minute,
              x_labels=labels, series=[(str(kind.label), busiest[kind]) for kind in LineRequest.Kind],
              limit=(_("push limit"), settings.LINE_PUSH_RATE_PER_SECOND * 60),
              thresholds=[(_("multicast limit"), settings.LINE_MULTICAST_RATE_PER_SECOND * 60)],
              desc=_("Requests LINE accepted in the busiest minute of each hour, against the configured limits.")),
        Chart(title=_("LINE requests per minute: the hour's average"), y_label=per_minute, x_labels=labels,
              series=[(str(kind.label), [round(n / 60, 1) for n in sent[kind]]) for kind in LineRequest.Kind]),
        Chart(title=_("LINE requests refused with 429, by the hour they were made"), y_label=_("requests"),
              x_labels=labels, series=[(_("last answer 429"), limited)], kind="bar",
              desc=_("Requests whose latest answer from LINE was 429 (rate limit or monthly quota).")),
        Chart(title=_("LINE outbound backlog at the end of each hour"), y_label=_("messages"), x_labels=labels,
              series=[(_("queued"), backlog)],
              desc=_("Messages queued and not yet sent (skipped and failed ones left out).")),
    ]


def _backlog_per_hour(hours: list[datetime], oldest: datetime) -> list[int]:
    """Queued-and-not-yet-sent messages at the end of each hour: those left from before the window, plus the
    ones created, minus the ones sent, hour by hour (two grouped reads instead of one count per hour)."""
    status = OutboundMessage.Status
    since = hours[0]
    first = id_since(OutboundMessage.objects.all(), field_name="created_at", since=oldest)
    if first is None:
        return [OutboundMessage.objects.filter(status__in=[status.QUEUED, status.PLANNED]).count()] * len(hours)
    messages = OutboundMessage.objects.order_by().filter(pk__gte=first).exclude(status__in=[status.SKIPPED,
                                                                                           status.FAILED])
    # Still queued from before the window (the status index finds them, however old), or sent in it.
    left = (OutboundMessage.objects.filter(status__in=[status.QUEUED, status.PLANNED], created_at__lt=since).count()
            + messages.filter(created_at__lt=since, sent_at__gte=since).count())
    change = [0] * len(hours)
    index = {hour: i for i, hour in enumerate(hours)}
    for column, sign in (("created_at", 1), ("sent_at", -1)):
        for hour, n in (messages.filter(**{f"{column}__gte": since}).annotate(hour=TruncHour(column))
                        .values_list("hour").annotate(n=Count("id"))):
            i = index.get(timezone.localtime(hour))
            if i is not None:
                change[i] += sign * n
    backlog, running = [], left
    for delta in change:
        running += delta
        backlog.append(max(running, 0))
    return backlog
