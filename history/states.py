"""The state machine of a payment entry: pure functions, no database.

    mercard.transaction: authorized -> billed -> repayment_requested -> repaid
                         (billed -> repaid directly when the customer repaid elsewhere)
    merpay.payment, mercari.purchase: completed
    payment.refunded: from any state but refunded -> refunded (terminal)

Events that change the state of an existing entry (their parent_id names it):
mercard.billed, repayment.completed, payment.refunded. The repay API moves
billed -> repayment_requested. An event that arrives before the state it
needs (repayment.completed before mercard.billed) waits for that state; a
late event whose step the entry has already passed (mercard.billed that
happened before a refund already applied) is recorded as superseded; any
other transition is invalid and dead-lettered.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .models import EntryState, EntryType

ENTRY_TYPES = (EntryType.PURCHASE, EntryType.MERPAY, EntryType.CARD)
TRANSITION_TYPES = ("mercard.billed", "repayment.completed", "payment.refunded")
EVENT_TYPES = tuple(str(t) for t in ENTRY_TYPES) + TRANSITION_TYPES

INITIAL_STATE = {
    EntryType.PURCHASE: EntryState.COMPLETED,
    EntryType.MERPAY: EntryState.COMPLETED,
    EntryType.CARD: EntryState.AUTHORIZED,
}
# Which parent types an entry may have (None = may be top-level).
ENTRY_PARENT_TYPES: dict[str, set[str]] = {
    EntryType.PURCHASE: set(),
    EntryType.MERPAY: {EntryType.PURCHASE},
    EntryType.CARD: {EntryType.PURCHASE, EntryType.MERPAY},
}
# Which entry types a transition event may target (its parent_id).
TRANSITION_TARGET_TYPES: dict[str, set[str]] = {
    "mercard.billed": {EntryType.CARD},
    "repayment.completed": {EntryType.CARD},
    "payment.refunded": {EntryType.PURCHASE, EntryType.MERPAY, EntryType.CARD},
}
TRANSITION_TO = {
    "mercard.billed": EntryState.BILLED,
    "repayment.completed": EntryState.REPAID,
    "payment.refunded": EntryState.REFUNDED,
}
ALLOWED_FROM = {
    "mercard.billed": {EntryState.AUTHORIZED},
    "repayment.completed": {EntryState.BILLED, EntryState.REPAYMENT_REQUESTED},
    "payment.refunded": {EntryState.COMPLETED, EntryState.AUTHORIZED, EntryState.BILLED,
                         EntryState.REPAYMENT_REQUESTED, EntryState.REPAID},
}
# An event that arrives before this state waits for it instead of failing.
PREREQUISITE = {"repayment.completed": EntryState.BILLED}

# Position along the path; refunded is past everything.
RANK = {
    EntryState.COMPLETED: 0, EntryState.AUTHORIZED: 0, EntryState.BILLED: 1,
    EntryState.REPAYMENT_REQUESTED: 2, EntryState.REPAID: 3, EntryState.REFUNDED: 9,
}


@dataclass(frozen=True)
class Decision:
    action: str  # apply | wait | supersede | reject
    to_state: str = ""
    wait_for: str = ""
    reason: str = ""


def transition_decide(*, entry_type: str, state: str, state_at: datetime, event_type: str,
                      occurred_at: datetime) -> Decision:
    """What a transition event does to an entry in `state` (reached at `state_at`)."""
    target = TRANSITION_TO[event_type]
    if state in ALLOWED_FROM[event_type]:
        return Decision("apply", to_state=target)
    needed = PREREQUISITE.get(event_type)
    if needed is not None and RANK[state] < RANK[needed]:
        return Decision("wait", wait_for=needed, reason=f"{event_type} needs the payment {needed} first")
    if RANK[state] > RANK[target] and occurred_at <= state_at:
        return Decision("supersede", to_state=target,
                        reason=f"late {event_type}: the payment was already {state} at {state_at.isoformat()}")
    return Decision("reject", reason=f"invalid transition: {event_type} on a {entry_type} that is {state}")


def repay_refusal(*, entry_type: str, state: str) -> str | None:
    """Why the repay action is not allowed now, or None if it is."""
    if entry_type != EntryType.CARD:
        return f"only a mercard.transaction can be repaid; this is a {entry_type}"
    if state != EntryState.BILLED:
        return f"only a billed, unpaid card transaction can be repaid; this one is {state}"
    return None


def actions_for(*, entry_type: str, state: str, amount: int, payment_id: str) -> list[dict]:
    if repay_refusal(entry_type=entry_type, state=state) is None:
        return [{"action": "repay", "amount": amount, "method": "POST",
                 "href": f"/api/history/payments/{payment_id}/repay"}]
    return []
