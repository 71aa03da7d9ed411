"""Demo histories for c-00001..c-00005: purchases paid by card, billed, one repaid early, a refund,
a plain Merpay payment and an outside card transaction, delivered partly out of order through the inbox."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone

from mercari_ops.inbox.registry import get_topic
from mercari_ops.inbox.services import Outcome, event_clean, inbox_accept

from .canonical import TOPIC

CUSTOMERS = [f"c-{n:05d}" for n in range(1, 6)]
# Item names as customers (Japanese) see them in their history.
ITEMS = [("ヴィンテージカメラ", 12800), ("スニーカー", 6400), ("ボードゲーム", 3200), ("デスクライト", 2500),
         ("小説セット", 1800)]


def _events(customer_id: str, index: int, now) -> list[dict]:
    """One customer's events in the order they are delivered (some children before their parent)."""
    def at(days: float) -> str:
        return (now - timedelta(days=days)).isoformat().replace("+00:00", "Z")

    def event(n: int, type_: str, payment_id: str, parent_id: str | None, amount: int, when: str, **attrs) -> dict:
        return {"event_id": f"demo-{customer_id}-{n}", "type": type_, "payment_id": payment_id,
                "parent_id": parent_id, "customer_id": customer_id, "amount": amount, "occurred_at": when,
                "attributes": attrs}

    c = customer_id
    events = []
    for k in range(3):
        item, price = ITEMS[(index + k) % len(ITEMS)]
        day = 40 - k * 12
        purchase = event(10 * k + 1, "mercari.purchase", f"pur-{c}-{k}", None, price, at(day), item_name=item)
        card = event(10 * k + 2, "mercard.transaction", f"tx-{c}-{k}", f"pur-{c}-{k}", price, at(day - 0.001),
                     merchant_name="Mercari", merchant_id="m-mercari", payment_method="mercard")
        billed = event(10 * k + 3, "mercard.billed", f"bill-{c}-{k}", f"tx-{c}-{k}", price, at(day - 10))
        # Out of order on purpose: the card transaction (and its bill) arrive before the purchase they paid.
        events += [card, billed, purchase] if k == 0 else [purchase, card]
        if k == 1:
            events.append(billed)
    if index % 2 == 0:  # repaid early
        events.append(event(41, "repayment.completed", f"rep-{c}", f"tx-{c}-0", ITEMS[index % 5][1], at(20)))
    if index % 3 == 0:  # a refund of the newest purchase's card transaction
        events.append(event(42, "payment.refunded", f"ref-{c}", f"tx-{c}-2", ITEMS[(index + 2) % 5][1], at(15)))
    events.append(event(51, "merpay.payment", f"mp-{c}", None, 980, at(5), merchant_name="Lawson",
                        merchant_id="m-lawson", payment_method="code"))
    events.append(event(61, "mercard.transaction", f"tx-out-{c}", None, 4500, at(2), merchant_name="Uniqlo",
                        merchant_id="m-uniqlo-id", payment_method="id"))
    return events


def seed(*, stdout, now: datetime | None = None) -> str:
    topic = get_topic(TOPIC)
    now = (now or timezone.now()).replace(microsecond=0)
    counts = {outcome: 0 for outcome in Outcome}
    for index, customer_id in enumerate(CUSTOMERS):
        for raw in _events(customer_id, index, now):
            counts[inbox_accept(topic=topic, event=event_clean(topic, raw)).outcome] += 1
    return (f"{counts[Outcome.PROCESSED]} payment events applied, {counts[Outcome.WAITING]} waited for their "
            f"parent, {counts[Outcome.DUPLICATE]} already there, for {len(CUSTOMERS)} customers")
