"""Helpers shared by the loyalty tests: events and a small rule set."""

import itertools
from datetime import UTC, datetime

_ids = itertools.count(1)

RULES = {
    "window_months": 12,
    "stages": [
        {"stage": 10, "name": "Regular", "thresholds": {}},
        {"stage": 20, "name": "Silver", "combine": "all", "thresholds": {"buy_amount": 10000, "buy_count": 2}},
        {"stage": 30, "name": "Gold", "combine": "any", "thresholds": {"buy_amount": 50000, "sell_count": 10}},
        {"stage": 40, "name": "Platinum", "combine": "all",
         "thresholds": {"buy_amount": 100000, "sell_amount": 50000, "pay_amount": 10000}},
    ],
}


def event(customer_id="c-1", kind="buy", amount=1000, occurred_at=None, event_id=None) -> dict:
    if occurred_at is None:
        occurred_at = datetime.now(UTC).replace(microsecond=0)
    if isinstance(occurred_at, datetime):
        occurred_at = occurred_at.isoformat().replace("+00:00", "Z")
    return {"event_id": event_id or f"act-{next(_ids)}", "customer_id": customer_id, "kind": kind,
            "amount": amount, "occurred_at": occurred_at}


def publish_rules(definition=None, by="tester"):
    from loyalty.services import rules_version_publish

    return rules_version_publish(definition=definition or RULES, by=by, note="test rules")
