"""Reads: the points estimate (hot path), customer facts, report queries."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.db.backends.postgresql.base import ServerBindingCursor
from django.utils import timezone

from loyalty import selectors as loyalty_selectors

from . import rules
from .catalog import catalog_get
from .models import CardStatus
from .services import estimate_sql

DEFAULT_PAYMENT_METHOD = "mercard"


def _kept_cursor():
    """A server-binding cursor kept per database connection (made again after a reconnection).

    Making a cursor and Django's wrapper around it cost about as much CPU as the query itself
    (measured: 161 us per call against 85 us on a kept cursor).
    """
    connection.ensure_connection()
    raw = connection.connection
    kept = connection.__dict__.get("_estimate_cursor")
    if kept is None or kept[0] is not raw or kept[1].closed:
        kept = connection.__dict__["_estimate_cursor"] = (raw, ServerBindingCursor(raw))
    return kept[1]


def _stage_of(stage: int | None, card_status: int | None) -> int | None:
    """A card holder with no marketplace activity yet has the lowest stage, like everyone before their first
    activity; only an ID unknown to both loyalty and the card is an unknown customer (None)."""
    return loyalty_selectors.stage_lowest() if stage is None and card_status is not None else stage


def customer_facts_get(*, customer_id: str) -> tuple[int | None, int | None]:
    """(loyalty stage, card status) in one indexed query; None for what is unknown (see `_stage_of`).

    The query is the same on every request, so PostgreSQL parses and plans it once per connection
    (prepared on first use; DATABASES OPTIONS["prepare_threshold"] None disables it, as behind a
    transaction-pooling pgbouncer < 1.21), on one cursor kept per connection. Database errors still
    become Django's (and mark the connection for closing at the end of the request). Inside a
    transaction, when queries are logged (DEBUG, tests) or with CAMPAIGNS_ESTIMATE_PREPARED off it
    runs on Django's own cursor instead.
    """
    statement = estimate_sql.customer_facts()
    if settings.CAMPAIGNS_ESTIMATE_PREPARED and not connection.queries_logged and not connection.in_atomic_block:
        cursor = _kept_cursor()
        with connection.wrap_database_errors:
            cursor.execute(statement, [customer_id, customer_id], prepare=True)
            stage, card_status = cursor.fetchone()
    else:
        with connection.cursor() as cursor:
            cursor.execute(statement, [customer_id, customer_id])
            stage, card_status = cursor.fetchone()
    return _stage_of(stage, card_status), card_status


def customer_facts_many(*, customer_ids: list[str]) -> tuple[dict[str, int], dict[str, int]]:
    """Stages and card statuses of many customers (settlement, backtest, provisions): two queries (three when a
    card holder has no loyalty stage yet); a customer unknown to both is absent."""
    stages = loyalty_selectors.customer_stages_many(customer_ids=customer_ids)
    statuses = dict(
        CardStatus.objects.filter(customer_id__in=customer_ids).values_list("customer_id", "mercard_status")
    )
    newcomers = [customer_id for customer_id in statuses if customer_id not in stages]
    stages.update({customer_id: _stage_of(None, statuses[customer_id]) for customer_id in newcomers})
    return stages, statuses


def _no(reason: str) -> dict:
    return {"eligible": False, "points": 0, "rate": None, "campaign_id": None, "reason": reason}


def estimate_items(*, customer_id: str, items: list[dict], now=None) -> list[dict]:
    """Estimates for several items of one customer; at most one database query in total.

    Each item: amount, channel, merchant_id (optional), payment_method (optional, default mercard).
    No cap is applied (as in the source design). When several campaigns match, the one giving
    the most points is shown (ties: the lowest campaign id); settlement grants every match.
    """
    catalog = catalog_get()
    active = catalog.active(now or timezone.now())
    if not active:
        return [_no(rules.NO_ACTIVE_CAMPAIGN) for _ in items]
    stage, card_status = customer_facts_get(customer_id=customer_id)
    if stage is None:
        return [_no(rules.UNKNOWN_CUSTOMER) for _ in items]
    results = []
    for item in items:
        method = item.get("payment_method") or DEFAULT_PAYMENT_METHOD
        merchant = None
        merchant_id = item.get("merchant_id")
        if merchant_id:
            merchant = catalog.merchants.lookup(merchant_id, method)
            if merchant is None:
                results.append(_no(rules.UNKNOWN_MERCHANT))
                continue
        best: rules.Match | None = None
        reasons = []
        for rule in active:
            outcome = rule.evaluate(stage=stage, card_status=card_status, amount=item["amount"],
                                    channel=item["channel"], merchant=merchant, payment_method=method)
            if isinstance(outcome, str):
                reasons.append(outcome)
            elif best is None or outcome.points > best.points:
                best = outcome
        if best is None:
            results.append(_no(rules.best_reason(reasons)))
        else:
            results.append({"eligible": True, "points": best.points, "rate": best.rate,
                             "campaign_id": best.campaign_id, "reason": None})
    return results


def points_estimate(*, customer_id: str, amount: int, channel: str, merchant_id: str | None = None,
                    payment_method: str | None = None) -> dict:
    """The estimate for one payment (see interfaces.md); the API and the history app call this."""
    return estimate_items(customer_id=customer_id, items=[
        {"amount": amount, "channel": channel, "merchant_id": merchant_id, "payment_method": payment_method}
    ])[0]
