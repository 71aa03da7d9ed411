"""Campaigns' metrics (docs/operations.md "Metrics"): points and estimate latency counted where they happen,
bills and grants at scrape time."""

from __future__ import annotations

from django.db.models import Min
from django.utils import timezone

from mercari_ops.common.metrics import ScrapeGauge, counter, histogram, scrape_area_register
from mercari_ops.common.metrics.queries import mostly_done_counts

POINTS_GRANTED = counter("mercari_ops_campaigns_points_granted_total", "Points the points service accepted")
POINTS_REQUESTS = counter("mercari_ops_campaigns_points_requests_total",
                          "Grants sent to the points service by outcome (granted, rejected, unavailable)",
                          ["outcome"])
ESTIMATE_DURATION = histogram("mercari_ops_campaigns_estimate_duration_seconds", "The estimate API view")


def grants_delivery_counted(*, granted_points: list[int], rejected: int, unavailable: int) -> None:
    """After a delivery pass committed: what the points service answered."""
    if granted_points:
        POINTS_GRANTED.inc(sum(granted_points))
        POINTS_REQUESTS.labels("granted").inc(len(granted_points))
    if rejected:
        POINTS_REQUESTS.labels("rejected").inc(rejected)
    if unavailable:
        POINTS_REQUESTS.labels("unavailable").inc(unavailable)


GAUGES = (
    ScrapeGauge("mercari_ops_campaigns_bills", "Bills by state (settled: estimated from the table's size)",
                ("status",)),
    ScrapeGauge("mercari_ops_campaigns_bills_pending_oldest_age_seconds", "Age of the oldest pending bill (0: none)"),
    ScrapeGauge("mercari_ops_campaigns_grants", "Points grants by state (delivered: estimated from the table's size)",
                ("status",)),
    ScrapeGauge("mercari_ops_campaigns_grants_overdue_seconds",
                "How long the most overdue pending grant is past its due time (0: none)"),
    ScrapeGauge("mercari_ops_campaigns_points_breaker_open", "1 while the points service's breaker pauses delivery"),
)


def read() -> dict:
    """Indexes bill_status_received and grant_status_next; the breaker is one row."""
    from .models import Bill, PointsGrant, PointsServiceBreaker

    now = timezone.now()
    bills = mostly_done_counts(Bill, "status", [Bill.Status.PENDING, Bill.Status.DEAD], Bill.Status.SETTLED)
    grants = mostly_done_counts(PointsGrant, "status", [PointsGrant.Status.PENDING, PointsGrant.Status.REJECTED],
                                PointsGrant.Status.SENT)
    oldest_bill = (Bill.objects.filter(status=Bill.Status.PENDING).order_by()
                   .aggregate(oldest=Min("received_at"))["oldest"])
    due = (PointsGrant.objects.filter(status=PointsGrant.Status.PENDING).order_by()
           .aggregate(due=Min("next_attempt_at"))["due"])
    breaker_open = PointsServiceBreaker.objects.filter(open_until__gt=now).exists()
    return {
        "mercari_ops_campaigns_bills": {(str(k[0]),): v for k, v in bills.items()},
        "mercari_ops_campaigns_bills_pending_oldest_age_seconds":
            max(0.0, (now - oldest_bill).total_seconds()) if oldest_bill else 0.0,
        "mercari_ops_campaigns_grants": {
            ({"pending": "pending", "rejected": "failed", "sent": "delivered"}[str(k[0])],): v
            for k, v in grants.items()},
        "mercari_ops_campaigns_grants_overdue_seconds": max(0.0, (now - due).total_seconds()) if due else 0.0,
        "mercari_ops_campaigns_points_breaker_open": float(breaker_open),
    }


def register() -> None:
    scrape_area_register("campaigns", GAUGES, read)
