"""Payment events for tests: a tree of purchase -> card transaction -> bill / repayment / refund."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

_counter = itertools.count(1)
BASE = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


def at(minutes: float) -> str:
    return (BASE + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


def payment_event(type_: str, payment_id: str, parent_id: str | None = None, *, customer_id: str = "c-1",
                  amount: int = 3000, minutes: float = 0, event_id: str | None = None, **attributes) -> dict:
    event = {"event_id": event_id or f"pe-{next(_counter)}", "type": type_, "payment_id": payment_id,
             "customer_id": customer_id, "amount": amount, "occurred_at": at(minutes),
             "attributes": attributes or {"merchant_name": "Mercari"}}
    if parent_id is not None:
        event["parent_id"] = parent_id
    return event


def card_tree(n: int | str, *, customer_id: str = "c-1", amount: int = 3000, refund: bool = False,
              repaid: bool = True, start: float = 0) -> list[dict]:
    """In occurred_at order: purchase, card transaction, bill, then repayment or refund."""
    pur, tx = f"pur-{n}", f"tx-{n}"
    events = [
        payment_event("mercari.purchase", pur, customer_id=customer_id, amount=amount, minutes=start,
                      item_name=f"item {n}"),
        payment_event("mercard.transaction", tx, pur, customer_id=customer_id, amount=amount, minutes=start + 1,
                      merchant_id="m-mercari", payment_method="mercard"),
        payment_event("mercard.billed", f"bill-{n}", tx, customer_id=customer_id, amount=amount, minutes=start + 2),
    ]
    if repaid:
        events.append(payment_event("repayment.completed", f"rep-{n}", tx, customer_id=customer_id, amount=amount,
                                    minutes=start + 3))
    if refund:
        events.append(payment_event("payment.refunded", f"ref-{n}", tx, customer_id=customer_id, amount=amount,
                                    minutes=start + 4))
    return events
