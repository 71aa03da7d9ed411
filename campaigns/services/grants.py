"""Deliver points grants through the gateway, then notify the customer.

Grants are rows (state in PostgreSQL, not in the broker): the after-commit task delivers
the new ones at once and the sweeper (`campaigns.settle_sweep`) retries the rest. A grant
is claimed with FOR UPDATE SKIP LOCKED and carries its idempotency key on every attempt,
so a retry after a lost answer, or two workers racing, never grants twice.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from line_integration.selectors import line_users_linked
from line_integration.services import line_notify

from ..clients import GrantRequest, PointsGatewayRejected, PointsGatewayUnavailable, points_gateway
from ..models import Bill, CampaignBudget, CampaignReward, PointsGrant
from . import grants_sql as sql

logger = logging.getLogger(__name__)


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), settings.CAMPAIGNS_GRANT_RETRY_MAX_SECONDS))


def notification_text(*, points: int, month: str) -> str:
    return f"{points:,} points from your {month} Mercard bill have been added. Thank you for using Mercard!"


def _grants_update(pks: list[int], **values) -> None:
    if pks:
        PointsGrant.objects.filter(pk__in=sql.ids(pks)).update(**values)


def _customers_reach(*, grants: list[tuple[int, str, int, str, str]]) -> dict[int, str]:
    """Notify each grant's customer (LINE when linked, else a recorded notification): {grant pk: channel}."""
    # Only linked customers can be reached through `line_notify`: asking it for everyone else would cost a
    # query per grant just to answer False.
    linked = line_users_linked(customer_ids=sorted({customer_id for _, customer_id, *_ in grants}))
    via: dict[int, str] = {}
    recorded = []
    for pk, customer_id, points, month, key in grants:
        text = notification_text(points=points, month=month)
        sent = False
        if customer_id in linked:
            try:
                sent = bool(line_notify(customer_id=customer_id, text=text, idempotency_key=f"points-{key}"))
            except Exception as exc:  # LINE trouble must not block points; fall back to a recorded notice
                logger.warning("line_notify failed for %s: %r", customer_id, exc)
        if sent:
            via[pk] = "line"
        else:
            via[pk] = "recorded"
            recorded.append((customer_id, f"points-{key}", text))
    sql.notifications_insert(rows=recorded, now=timezone.now())
    return via


def _by_channel(via: dict[int, str]) -> dict[str, list[int]]:
    return {channel: [pk for pk, value in via.items() if value == channel] for channel in ("line", "recorded")}


def customers_notify(*, grants: list[tuple[int, str, int, str, str]]) -> dict[str, int]:
    """Tell each customer about their grant: LINE when linked, otherwise a recorded notification.

    grants: (grant pk, customer_id, points, billing month, idempotency key).
    """
    by_channel = _by_channel(_customers_reach(grants=grants))
    for channel, pks in by_channel.items():
        _grants_update(pks, notified_via=channel)
    return {channel: len(pks) for channel, pks in by_channel.items()}


def grant_rewards_reverse(*, grant_ids: list[int], now=None) -> int:
    """A rejected grant: its rewards are reversed and their points released from the caps."""
    now = now or timezone.now()
    rewards = CampaignReward.objects.filter(grant_id__in=grant_ids, reversed_at__isnull=True)
    release: dict[tuple[int, str], int] = defaultdict(int)
    for campaign_id, customer_id, points in rewards.values_list("campaign_id", "customer_id", "points"):
        release[(campaign_id, customer_id)] += points
    count = rewards.update(reversed_at=now)
    for (campaign_id, customer_id), points in sorted(release.items()):
        CampaignBudget.objects.filter(campaign_id=campaign_id, customer_id=customer_id).update(
            points=F("points") - points
        )
    return count


def grants_deliver(*, grant_ids: list[int] | None = None, limit: int = 5000, now=None) -> dict[str, int]:
    """Deliver due pending grants (optionally only these ids). Returns counts per outcome."""
    now = now or timezone.now()
    gateway = points_gateway()
    counts = {"sent": 0, "retry": 0, "rejected": 0, "line": 0, "recorded": 0}
    with transaction.atomic():
        query = PointsGrant.objects.select_for_update(skip_locked=True, of=("self",)).filter(
            status=PointsGrant.Status.PENDING, next_attempt_at__lte=now
        )
        if grant_ids is not None:
            query = query.filter(pk__in=grant_ids)
        # The grants alone are claimed (no join): joined to their bills, every call probed the bill of every
        # pending grant before keeping the first `limit`, so delivering a month cost pending x batches probes.
        claimed = list(query.order_by("pk").values_list("pk", "customer_id", "points", "idempotency_key",
                                                        "bill_id", "attempts")[:limit])
        if not claimed:
            return counts
        bill_pks = sql.ids({row[4] for row in claimed})
        months = dict(Bill.objects.filter(pk__in=bill_pks).values_list("pk", "billing_month"))
        rows = [(pk, customer, points, key, months[bill_pk], attempts)
                for pk, customer, points, key, bill_pk, attempts in claimed]
        sent, failed, rejected = [], [], []
        reason = "Mercard cashback {month}"
        if gateway.batch:
            gateway.grant_many(GrantRequest(key, customer, points, reason.format(month=month))
                               for _, customer, points, key, month, _ in rows)
            sent = rows
        else:
            for index, row in enumerate(rows):
                pk, customer, points, key, month, attempts = row
                try:
                    gateway.grant(GrantRequest(key, customer, points, reason.format(month=month)))
                except PointsGatewayUnavailable as exc:
                    # The service is down: stop hammering it; this and the rest wait for the backoff.
                    failed = [(r, str(exc)) for r in rows[index:]]
                    break
                except PointsGatewayRejected as exc:
                    rejected.append((row, str(exc)))
                    continue
                sent.append(row)
        # The customer is told in the same transaction; one UPDATE per channel marks the grants sent and
        # notified (each grant row is rewritten once: its status is indexed, so every write costs index entries).
        by_channel = _by_channel(_customers_reach(grants=[(pk, customer, points, month, key)
                                                          for pk, customer, points, key, month, _ in sent]))
        for channel, pks in by_channel.items():
            _grants_update(pks, status=PointsGrant.Status.SENT, sent_at=now, attempts=F("attempts") + 1,
                           last_error="", notified_via=channel)
        for (pk, *_rest, attempts), error in failed:
            PointsGrant.objects.filter(pk=pk).update(
                attempts=attempts + 1, next_attempt_at=now + _backoff(attempts + 1), last_error=error[:2000]
            )
        for (pk, *_rest, attempts), error in rejected:
            PointsGrant.objects.filter(pk=pk).update(status=PointsGrant.Status.REJECTED, attempts=attempts + 1,
                                                     last_error=error[:2000])
        if rejected:
            grant_rewards_reverse(grant_ids=[row[0] for row, _ in rejected], now=now)
        if failed:
            logger.warning("points gateway unavailable, %d grant(s) retried later: %s", len(failed), failed[0][1])
    counts.update(sent=len(sent), retry=len(failed), rejected=len(rejected),
                  **{channel: len(pks) for channel, pks in by_channel.items()})
    return counts


def grants_deliver_all(*, limit_per_batch: int = 5000, now=None) -> dict[str, int]:
    """Deliver every due grant, batch after batch, until none is left or the gateway is down."""
    total = {"sent": 0, "retry": 0, "rejected": 0, "line": 0, "recorded": 0}
    while True:
        counts = grants_deliver(limit=limit_per_batch, now=now)
        for key, value in counts.items():
            total[key] += value
        if counts["retry"] or counts["sent"] + counts["rejected"] == 0:
            return total


__all__ = ["customers_notify", "grants_deliver", "grants_deliver_all", "grant_rewards_reverse"]
