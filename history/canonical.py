"""The payment-events schema and the one canonical shape every event is turned into."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings

from mercari_ops.common.schema import DateTime, Dict, Int, Schema, Str
from mercari_ops.inbox.registry import PermanentEventError

from .states import ENTRY_TYPES, EVENT_TYPES, TRANSITION_TYPES

TOPIC = "payment-events"
MAX_AMOUNT = 10**10

EVENT_SCHEMA = Schema({
    "event_id": Str(max_length=128),
    "type": Str(max_length=32, choices=EVENT_TYPES),
    "payment_id": Str(max_length=120),
    "parent_id": Str(max_length=120, required=False, nullable=True),
    "customer_id": Str(max_length=64),
    "amount": Int(min_value=0, max_value=MAX_AMOUNT),
    "occurred_at": DateTime(future_tolerance=timedelta(seconds=settings.EVENT_FUTURE_TOLERANCE_SECONDS)),
    "attributes": Dict(required=False, nullable=True),
})

_TITLE_KEYS = ("item_name", "merchant_name", "shop_name", "title")
_TYPE_TITLES = {
    "mercari.purchase": "Mercari purchase",
    "merpay.payment": "Merpay payment",
    "mercard.transaction": "Mercard",
}


@dataclass(frozen=True)
class CanonicalEvent:
    event_id: str
    type: str
    payment_id: str
    parent_id: str | None
    customer_id: str
    amount: int
    occurred_at: datetime
    attributes: dict
    title: str

    @property
    def is_transition(self) -> bool:
        return self.type in TRANSITION_TYPES


def event_canonicalize(event: dict) -> CanonicalEvent:
    """The common shape of a cleaned payment event; PermanentEventError for a missing required parent."""
    event_type = event["type"]
    parent_id = event.get("parent_id") or None
    if event_type in TRANSITION_TYPES and parent_id is None:
        raise PermanentEventError(f"parent_id is required for {event_type} (it names the payment it changes)",
                                  "parent_id")
    if event_type == "mercari.purchase" and parent_id is not None:
        raise PermanentEventError("a mercari.purchase has no parent", "parent_id")
    if parent_id is not None and parent_id == event["payment_id"] and event_type in ENTRY_TYPES:
        raise PermanentEventError("a payment cannot be its own parent", "parent_id")
    attributes = event.get("attributes") or {}
    title = next((str(attributes[k]) for k in _TITLE_KEYS if attributes.get(k)), _TYPE_TITLES.get(event_type, ""))
    return CanonicalEvent(
        event_id=event["event_id"], type=event_type, payment_id=event["payment_id"], parent_id=parent_id,
        customer_id=event["customer_id"], amount=event["amount"],
        occurred_at=datetime.fromisoformat(event["occurred_at"].replace("Z", "+00:00")),
        attributes=attributes, title=title[:200],
    )
