"""The inbox's metrics (docs/operations.md "Metrics"): outcomes where they happen, backlogs at scrape time."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count, Min, Q
from django.utils import timezone

from mercari_ops.common.metrics import ScrapeGauge, counter, histogram, scrape_area_register

from .models import DeadLetter, InboxEvent
from .registry import get_topic, topic_names

# Registered topics (and `unknown`) start at 0: InboxDeadLettersRising's increase() sees the first one.
EVENTS = counter("mercari_ops_inbox_events_total", "Events accepted (push, backfill, retry run) by outcome",
                 ["topic", "outcome"],
                 initial=lambda: [(topic, outcome.value) for topic in topic_names() for outcome in _outcomes()])
DEAD_LETTERS_RECEIVED = counter("mercari_ops_inbox_dead_letters_received_total",
                                "Bodies refused with 400 and kept as dead letters", ["topic"],
                                initial=lambda: [(topic,) for topic in [*topic_names(), "unknown"]])
PUSH_DURATION = histogram("mercari_ops_inbox_push_duration_seconds", "The Pub/Sub push view, auth to answer",
                          ["topic"])


def _outcomes():
    from .services.handler import Outcome  # here: services import this module's counters

    return Outcome


def topic_label(name: str) -> str:
    """A registered topic's name; anything else a caller put in the URL is `unknown` (bounded label values)."""
    return name if get_topic(name) is not None else "unknown"


GAUGES = (
    ScrapeGauge("mercari_ops_inbox_backlog_events", "Events waiting, retrying or dead", ("topic", "status")),
    ScrapeGauge("mercari_ops_inbox_waiting_oldest_age_seconds", "Age of the oldest waiting event (0: none)"),
    ScrapeGauge("mercari_ops_inbox_waiting_over_alert_events",
                "Events waiting longer than INBOX_WAITING_ALERT_SECONDS"),
    ScrapeGauge("mercari_ops_inbox_dead_letters_open", "Dead letters not replayed or discarded", ("topic",)),
)
_BACKLOG = [InboxEvent.Status.WAITING, InboxEvent.Status.RETRY, InboxEvent.Status.DEAD]


def read() -> dict:
    """Three indexed queries: inbox_needs_operator, inbox_waiting_since, dead_letter_status_topic."""
    now = timezone.now()
    backlog = {(topic, status): 0.0 for topic in topic_names() for status in _BACKLOG}
    rows = (InboxEvent.objects.filter(status__in=_BACKLOG).order_by().values_list("topic", "status")
            .annotate(n=Count("*")))
    for topic, status, n in rows:
        backlog[(topic, status)] = float(n)
    cutoff = now - timedelta(seconds=settings.INBOX_WAITING_ALERT_SECONDS)
    waiting = InboxEvent.objects.filter(status=InboxEvent.Status.WAITING).order_by().aggregate(
        oldest=Min("received_at"), over=Count("id", filter=Q(received_at__lt=cutoff)))
    oldest = waiting["oldest"]
    letters = {(topic,): 0.0 for topic in [*topic_names(), "unknown"]}
    for topic, n in (DeadLetter.objects.filter(status=DeadLetter.Status.OPEN).order_by()
                     .values_list("topic").annotate(n=Count("*"))):
        letters[(topic_label(topic),)] += float(n)  # a topic name nobody registered is any caller's URL
    return {
        "mercari_ops_inbox_backlog_events": backlog,
        "mercari_ops_inbox_waiting_oldest_age_seconds": (now - oldest).total_seconds() if oldest else 0.0,
        "mercari_ops_inbox_waiting_over_alert_events": float(waiting["over"]),
        "mercari_ops_inbox_dead_letters_open": letters,
    }


def register() -> None:
    scrape_area_register("inbox", GAUGES, read)
