"""Event builders for the campaigns tests."""

from __future__ import annotations

import itertools

_counter = itertools.count(1)


def line(payment_id: str, amount: int, merchant_id: str = "m-mercari", *, method: str = "mercard",
         channel: str = "mercari", paid_at: str = "2026-10-12T11:00:00Z") -> dict:
    return {"payment_id": payment_id, "amount": amount, "merchant_id": merchant_id, "payment_method": method,
            "channel": channel, "paid_at": paid_at}


def bill_event(customer_id: str, lines: list[dict], *, bill_id: str | None = None, event_id: str | None = None,
               month: str = "2026-10") -> dict:
    bill_id = bill_id or f"b-{month}-{customer_id}-{next(_counter)}"
    return {"event_id": event_id or f"bs-{bill_id}", "bill_id": bill_id, "customer_id": customer_id,
            "billing_month": month, "settled_at": "2026-11-27T03:00:00Z", "lines": lines}
