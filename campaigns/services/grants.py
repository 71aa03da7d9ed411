"""Deliver points grants through the gateway, then notify the customer.

Grants are rows (state in PostgreSQL, not in the broker): the after-commit task delivers
the new ones at once and the sweepers (`campaigns.settle_grants_sweep` every 10 s, `campaigns.settle_sweep`)
retry the rest. A grant is claimed with FOR UPDATE SKIP LOCKED and carries its idempotency key on
every attempt, so a retry after a lost answer, or two workers racing, never grants twice.

Failures are accounted per grant (issue 16): a grant the points service refused (408/429/5xx) while
it answered others gets an attempt and its own backoff; the grants after it are still sent. When the
service is down -- a refused connection, or CAMPAIGNS_POINTS_BREAKER_FAILURES unavailable answers in a
row (counted across runs) -- the circuit breaker (`PointsServiceBreaker`, admin) opens: delivery pauses
for a short doubling time (CAMPAIGNS_POINTS_BREAKER_RETRY_SECONDS up to ..._MAX_SECONDS), then one grant
probes; no grant is charged an attempt for the outage, and the first answer closes the breaker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

import requests
from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone, translation
from django.utils.translation import gettext

from line_integration.selectors import line_users_linked
from line_integration.services import line_notify
from mercari_ops.common.logging import log_safe_customer, log_safe_error

from ..clients import GrantRequest, PointsGatewayRejected, PointsGatewayUnavailable, points_gateway
from ..metrics import grants_delivery_counted
from ..models import Bill, CampaignBudget, CampaignReward, PointsGrant, PointsServiceBreaker
from . import grants_sql as sql

logger = logging.getLogger(__name__)


BREAKER = "points"
COUNTS = ("sent", "retry", "rejected", "line", "recorded", "not_charged", "paused")


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(settings.CAMPAIGNS_GRANT_RETRY_BASE_SECONDS * 2 ** max(attempts - 1, 0),
                                 settings.CAMPAIGNS_GRANT_RETRY_MAX_SECONDS))


def _breaker_pause(openings: int) -> timedelta:
    return timedelta(seconds=min(settings.CAMPAIGNS_POINTS_BREAKER_RETRY_SECONDS * 2 ** max(openings - 1, 0),
                                 settings.CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS))


def points_breaker_get() -> PointsServiceBreaker:
    breaker, _ = PointsServiceBreaker.objects.get_or_create(name=BREAKER)
    return breaker


def points_breaker_close(*, now=None) -> None:
    """An operator's "try now": the next delivery run sends at once (its answers decide what follows)."""
    PointsServiceBreaker.objects.filter(name=BREAKER).update(open_until=None, consecutive_failures=0, openings=0,
                                                             updated_at=now or timezone.now())


def _service_down(exc: PointsGatewayUnavailable) -> bool:
    """No connection at all (refused, unresolvable, connect timeout): down, not one grant's bad luck."""
    return isinstance(exc.__cause__, requests.ConnectionError)


@dataclass
class _Outcome:
    """One pass over claimed grants against the HTTP points service."""

    sent: list = field(default_factory=list)
    rejected: list = field(default_factory=list)
    charged: list = field(default_factory=list)      # refused while the service answered others: attempt + backoff
    not_charged: list = field(default_factory=list)  # unavailable during an outage: no attempt
    failures: int = 0                                # unavailable answers in a row at the end
    answered: bool = False
    outage: str = ""


def _send_each(gateway, rows: list, *, failures: int) -> _Outcome:
    """Send grants one by one, counting unavailable answers in a row from `failures` (the breaker's)."""
    outcome = _Outcome(failures=failures)
    streak: list = []  # unavailable since the last answer
    for row in rows:
        _, customer, points, key, month, _ = row
        try:
            gateway.grant(GrantRequest(key, customer, points, REASON.format(month=month)))
        except PointsGatewayUnavailable as exc:
            streak.append((row, str(exc)))
            outcome.failures += 1
            if _service_down(exc) or outcome.failures >= settings.CAMPAIGNS_POINTS_BREAKER_FAILURES:
                outcome.outage = str(exc)
                break
            continue
        except PointsGatewayRejected as exc:
            outcome.rejected.append((row, str(exc)))
        else:
            outcome.sent.append(row)
        # The service answered: the refusals before this answer were about those grants, not an outage.
        outcome.answered = True
        outcome.charged.extend(streak)
        streak, outcome.failures = [], 0
    if streak and outcome.answered and not outcome.outage:
        outcome.charged.extend(streak)
    else:
        outcome.not_charged.extend(streak)
    return outcome


def _breaker_record(breaker: PointsServiceBreaker, outcome: _Outcome, *, now) -> None:
    values: dict = {"consecutive_failures": outcome.failures, "updated_at": now}
    if outcome.outage:
        openings = breaker.openings + 1
        values.update(openings=openings, open_until=now + _breaker_pause(openings), last_error=outcome.outage[:2000],
                      opened_at=breaker.opened_at or now)
        logger.warning("points service unavailable (%s): grant delivery paused until %s, no attempt charged",
                       outcome.outage, values["open_until"].isoformat())
    elif outcome.answered:
        values.update(openings=0, open_until=None, opened_at=None, last_success_at=now)
        if breaker.open_until is not None:
            logger.info("points service answers again: grant delivery resumed")
    elif outcome.not_charged:
        values["last_error"] = outcome.not_charged[-1][1][:2000]
    PointsServiceBreaker.objects.filter(pk=breaker.pk).update(**values)


CUSTOMER_LANGUAGE = "ja"  # customers read Japanese, whatever language the worker or an operator's request runs in


def notification_text(*, points: int, month: str) -> str:
    """The customer's message about a grant (`month` YYYY-MM; the Japanese text writes it 2026年11月)."""
    year, _, month_number = month.partition("-")
    with translation.override(CUSTOMER_LANGUAGE):
        return gettext("%(points)s points from your %(month)s Mercard bill have been added. "
                       "Thank you for using Mercard!") % {
            "points": f"{points:,}", "month": month, "year": year, "month_number": month_number.lstrip("0")}


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
                logger.warning("line_notify failed for %s: %s", log_safe_customer(customer_id),
                               log_safe_error(exc, {"customer_id": customer_id}))
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


REASON = "Mercard cashback {month}"


def _ledger_grant(gateway, rows: list) -> tuple[list, list]:
    """The embedded ledger in one statement; if the database refuses it, grant by grant (a grant it refuses
    alone is rejected, the others go in). Returns (sent, rejected)."""
    try:
        with transaction.atomic():
            gateway.grant_many(GrantRequest(key, customer, points, REASON.format(month=month))
                               for _, customer, points, key, month, _ in rows)
        return rows, []
    except (DataError, IntegrityError):
        pass
    sent, rejected = [], []
    for row in rows:
        _, customer, points, key, month, _ = row
        try:
            with transaction.atomic():
                gateway.grant(GrantRequest(key, customer, points, REASON.format(month=month)))
        except (DataError, IntegrityError) as exc:
            rejected.append((row, f"points ledger refused the grant: {' '.join(str(exc).split())}"))
        else:
            sent.append(row)
    return sent, rejected


def grants_deliver(*, grant_ids: list[int] | None = None, limit: int = 5000, now=None) -> dict[str, int]:
    """Deliver due pending grants (optionally only these ids). Returns counts per outcome.

    `retry`: grants left pending (`not_charged`: refused during an outage, no attempt charged); `paused`: 1
    when the points service's breaker was open and nothing was sent.
    """
    now = now or timezone.now()
    gateway = points_gateway()
    counts = dict.fromkeys(COUNTS, 0)
    breaker = None
    if not gateway.batch:
        breaker = points_breaker_get()
        if breaker.open_until is not None and now < breaker.open_until:
            counts["paused"] = 1
            return counts
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
        failed, not_charged = [], []
        if gateway.batch:
            sent, rejected = _ledger_grant(gateway, rows)
        else:
            outcome = _send_each(gateway, rows, failures=breaker.consecutive_failures)
            sent, rejected, failed, not_charged = outcome.sent, outcome.rejected, outcome.charged, outcome.not_charged
            _breaker_record(breaker, outcome, now=now)
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
        if not_charged:
            # still due: sent again as soon as the breaker lets delivery through
            _grants_update([row[0] for row, _ in not_charged],
                           last_error=f"{not_charged[-1][1]} (points service unavailable: no attempt charged)"[:2000])
        for (pk, *_rest, attempts), error in rejected:
            PointsGrant.objects.filter(pk=pk).update(status=PointsGrant.Status.REJECTED, attempts=attempts + 1,
                                                     last_error=error[:2000])
        if rejected:
            grant_rewards_reverse(grant_ids=[row[0] for row, _ in rejected], now=now)
        if failed:
            logger.warning("points service refused %d grant(s), each retried after its backoff: %s", len(failed),
                           failed[0][1])
    grants_delivery_counted(granted_points=[row[2] for row in sent], rejected=len(rejected),
                            unavailable=len(failed) + len(not_charged))
    # retry: every claimed grant left pending (refused, unavailable, or not sent once the breaker opened)
    counts.update(sent=len(sent), retry=len(rows) - len(sent) - len(rejected), rejected=len(rejected),
                  not_charged=len(not_charged), **{channel: len(pks) for channel, pks in by_channel.items()})
    return counts


def grants_deliver_all(*, limit_per_batch: int = 5000, now=None) -> dict[str, int]:
    """Deliver every due grant, batch after batch, until none is left or the gateway is down."""
    total = dict.fromkeys(COUNTS, 0)
    while True:
        counts = grants_deliver(limit=limit_per_batch, now=now)
        for key, value in counts.items():
            total[key] += value
        if counts["retry"] or counts["paused"] or counts["sent"] + counts["rejected"] == 0:
            return total


__all__ = ["customers_notify", "grant_rewards_reverse", "grants_deliver", "grants_deliver_all", "points_breaker_close",
           "points_breaker_get"]
