"""Campaigns' metrics (docs/operations.md "Metrics"): points and estimate latency counted where they happen,
bills and grants at scrape time."""

from __future__ import annotations

from django.utils import timezone

from mercari_ops.common.metrics import ScrapeGauge, counter, histogram, scrape_area_register
from mercari_ops.common.metrics.queries import counts_by, done_count, rows_estimates

POINTS_GRANTED = counter("mercari_ops_campaigns_points_granted_total", "Points the points service accepted")
POINTS_REQUESTS = counter("mercari_ops_campaigns_points_requests_total",
                          "Grants sent to the points service by outcome (granted, rejected, unavailable)",
                          ["outcome"], initial=lambda: [("granted",), ("rejected",), ("unavailable",)])
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
    """Indexes bill_status_received and grant_status_next (counts and the oldest of each state in one GROUP BY
    each); the done states from the planner's row estimates; the breaker is one row."""
    from .models import Bill, PointsGrant, PointsServiceBreaker

    now = timezone.now()
    bills, bills_oldest = counts_by(Bill.objects.all(), "status", [Bill.Status.PENDING, Bill.Status.DEAD],
                                    oldest="received_at")
    grants, grants_due = counts_by(PointsGrant.objects.all(), "status",
                                   [PointsGrant.Status.PENDING, PointsGrant.Status.REJECTED], oldest="next_attempt_at")
    estimates = rows_estimates([Bill, PointsGrant])
    bills[(Bill.Status.SETTLED,)] = done_count(Bill, "status", Bill.Status.SETTLED, sum(bills.values()),
                                               estimates[Bill])
    grants[(PointsGrant.Status.SENT,)] = done_count(PointsGrant, "status", PointsGrant.Status.SENT,
                                                    sum(grants.values()), estimates[PointsGrant])
    oldest_bill, due = bills_oldest.get(Bill.Status.PENDING), grants_due.get(PointsGrant.Status.PENDING)
    breaker_open = PointsServiceBreaker.objects.filter(open_until__gt=now).exists()
    grant_state = {"pending": "pending", "rejected": "failed", "sent": "delivered"}
    return {
        "mercari_ops_campaigns_bills": {(str(k[0]),): v for k, v in bills.items()},
        "mercari_ops_campaigns_bills_pending_oldest_age_seconds":
            max(0.0, (now - oldest_bill).total_seconds()) if oldest_bill else 0.0,
        "mercari_ops_campaigns_grants": {(grant_state[str(k[0])],): v for k, v in grants.items()},
        "mercari_ops_campaigns_grants_overdue_seconds": max(0.0, (now - due).total_seconds()) if due else 0.0,
        "mercari_ops_campaigns_points_breaker_open": float(breaker_open),
    }


def register() -> None:
    scrape_area_register("campaigns", GAUGES, read)
