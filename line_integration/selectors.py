"""Reads for the admin, the API and other apps (which read LINE accounts only through these)."""

from collections.abc import Iterable

from django.db.models import Count, Q

from .models import LineLinkageUser, LineUser, OutboundMessage


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
