"""LINE's metrics (docs/operations.md "Metrics"): calls and 429s where they are made, backlog at scrape time."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count
from django.utils import timezone

from mercari_ops.common.metrics import ScrapeGauge, counter, scrape_area_register

KINDS = ("push", "multicast", "audience", "other")
WEBHOOK_TYPES = frozenset({"follow", "unfollow", "message", "accountLink", "postback", "join", "leave"})

REQUESTS = counter("mercari_ops_line_requests_total", "Calls to the LINE API by kind and HTTP status (error: none)",
                   ["kind", "status"])
# Label values known in advance start at 0: LineRateLimited's increase() sees the first 429 (issue 20).
RATE_LIMITED = counter("mercari_ops_line_rate_limited_total", "LINE answered 429", ["kind"],
                       initial=lambda: [(kind,) for kind in KINDS])
LIMITER_SLOTS = counter("mercari_ops_line_limiter_slots_total", "Send slots reserved from the global limiter",
                        ["kind"], initial=lambda: [("push",), ("multicast",)])
WEBHOOK_EVENTS = counter("mercari_ops_line_webhook_events_total", "LINE webhook events received (signed)", ["type"],
                         initial=lambda: [(kind,) for kind in sorted(WEBHOOK_TYPES | {"other"})])
BRAZE_WEBHOOKS = counter("mercari_ops_line_braze_webhooks_total", "Braze webhook calls by answer", ["outcome"])
_kinds: dict[str, str] = {}


def _kind(path: str) -> str:
    kind = _kinds.get(path)
    if kind is None:
        kind = _kinds[path] = ("push" if path.startswith("/v2/bot/message/push")
                               else "multicast" if path.startswith("/v2/bot/message/multicast")
                               else "audience" if path.startswith("/v2/bot/audienceGroup") else "other")
    return kind


def request_counted(path: str, status: int | None) -> None:
    """One call to LINE answered `status` (None: timed out or refused); the client calls this."""
    kind = _kind(path.split("?", 1)[0]) if "?" in path else _kind(path)
    REQUESTS.labels(kind, str(status) if status is not None else "error").inc()
    if status == 429:
        RATE_LIMITED.labels(kind).inc()


def webhook_event_counted(event_type) -> None:
    WEBHOOK_EVENTS.labels(event_type if event_type in WEBHOOK_TYPES else "other").inc()


GAUGES = (
    ScrapeGauge("mercari_ops_line_limiter_limit_per_second", "LINE's limit the global limiter paces under",
                ("kind",)),
    ScrapeGauge("mercari_ops_line_outbound_messages", "The outbound backlog: messages queued or planned",
                ("status",)),
    ScrapeGauge("mercari_ops_line_outbound_oldest_queued_age_seconds",
                "Age of the oldest queued outbound message (0: none)"),
    ScrapeGauge("mercari_ops_line_audience_jobs", "LINE audience upload jobs by state", ("status",)),
)
def read() -> dict:
    """Index outbound_status_id (counts, the oldest queued by id); audience jobs are a small table."""
    from .models import AudienceJob, OutboundMessage  # here: the counters above are imported by clients.py

    backlog_statuses = [OutboundMessage.Status.QUEUED, OutboundMessage.Status.PLANNED]
    backlog = {(status,): 0.0 for status in backlog_statuses}
    for status, n in (OutboundMessage.objects.filter(status__in=backlog_statuses).order_by().values_list("status")
                      .annotate(n=Count("*"))):
        backlog[(status,)] = float(n)
    # ids grow with created_at: the lowest queued id is the oldest message, found on the index
    oldest = (OutboundMessage.objects.filter(status=OutboundMessage.Status.QUEUED).order_by("id")
              .values_list("created_at", flat=True).first())
    jobs = {(status,): 0.0 for status in AudienceJob.Status.values}
    for status, n in AudienceJob.objects.order_by().values_list("status").annotate(n=Count("*")):
        jobs[(status,)] = float(n)
    return {
        "mercari_ops_line_limiter_limit_per_second": {("push",): float(settings.LINE_PUSH_RATE_PER_SECOND),
                                                      ("multicast",): float(settings.LINE_MULTICAST_RATE_PER_SECOND)},
        "mercari_ops_line_outbound_messages": backlog,
        "mercari_ops_line_outbound_oldest_queued_age_seconds":
            max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0,
        "mercari_ops_line_audience_jobs": jobs,
    }


def register() -> None:
    scrape_area_register("line", GAUGES, read)
