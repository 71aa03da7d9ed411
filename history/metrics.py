"""History's metrics (docs/operations.md "Metrics"): how late a payment shows, what waits, what is unpaid back."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Count, Min
from django.utils import timezone

from mercari_ops.common.metrics import ScrapeGauge, histogram, scrape_area_register

EVENT_TO_VISIBLE = histogram(
    "mercari_ops_history_event_to_visible_seconds",
    "From a payment event's time to the commit that shows it in the history (waiting for a parent included)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf")))


def event_visible_counted(occurred_at: datetime) -> None:
    """Observed when the applying transaction commits (the moment a reader can see it)."""
    transaction.on_commit(
        lambda: EVENT_TO_VISIBLE.observe(max(0.0, (timezone.now() - occurred_at).total_seconds())))


GAUGES = (
    ScrapeGauge("mercari_ops_history_events_waiting_for_parent", "Payment events waiting for their parent payment"),
    ScrapeGauge("mercari_ops_history_repayment_requests_pending", "Repayment requests not yet delivered"),
    ScrapeGauge("mercari_ops_history_repayment_pending_oldest_age_seconds",
                "Age of the oldest pending repayment request (0: none)"),
)


def read() -> dict:
    """Indexes inbox_needs_operator (status, topic) and history_repay_due (status, ...)."""
    from .canonical import TOPIC
    from .models import RepaymentRequest, WaitingPaymentEvent

    waiting = WaitingPaymentEvent.objects.filter(status=WaitingPaymentEvent.Status.WAITING, topic=TOPIC).count()
    pending = (RepaymentRequest.objects.filter(status=RepaymentRequest.Status.PENDING).order_by()
               .aggregate(n=Count("*"), oldest=Min("created_at")))
    oldest = pending["oldest"]
    return {
        "mercari_ops_history_events_waiting_for_parent": float(waiting),
        "mercari_ops_history_repayment_requests_pending": float(pending["n"]),
        "mercari_ops_history_repayment_pending_oldest_age_seconds":
            max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0,
    }


def register() -> None:
    scrape_area_register("history", GAUGES, read)
