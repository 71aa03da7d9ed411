"""Applying payment events: the inbox handler of the `payment-events` topic.

Runs inside the inbox transaction that records the event. Every event of a
customer takes that customer's transaction-scoped advisory lock first, so a
child that finds its parent missing (and parks as waiting) can never
interleave with the parent's insert and its release of waiting children:
whichever commits first, the other sees it.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from mercari_ops.common.locks import lock_key
from mercari_ops.inbox.registry import PermanentEventError, Waiting
from mercari_ops.inbox.services import inbox_release_waiting

from ..canonical import TOPIC, CanonicalEvent, event_canonicalize
from ..models import PaymentEntry, PaymentTransition
from ..states import ENTRY_PARENT_TYPES, INITIAL_STATE, TRANSITION_TARGET_TYPES, transition_decide


def customer_lock(*, customer_id: str) -> None:
    """Serialise every history write of one customer until the transaction ends (PostgreSQL).

    SQLite runs write transactions one at a time already (BEGIN IMMEDIATE).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(f"history:customer:{customer_id}")])


def state_key(payment_id: str, state: str) -> str:
    """The waiting key of an event that needs `payment_id` to reach `state` first."""
    return f"{payment_id}#{state}"


def payment_event_apply(event: dict) -> Waiting | None:
    """Inbox handler: create an entry or move one along its state path; Waiting if what it needs is missing."""
    canonical = event_canonicalize(event)
    customer_lock(customer_id=canonical.customer_id)
    if canonical.is_transition:
        return _transition_apply(canonical)
    return _entry_create(canonical)


def _parent_check(event: CanonicalEvent, parent: PaymentEntry) -> None:
    if parent.customer_id != event.customer_id:
        raise PermanentEventError(f"parent {event.parent_id} belongs to another customer", "customer_id")


def _entry_create(event: CanonicalEvent) -> Waiting | None:
    # One query for both the payment itself (a republished event) and its parent.
    wanted = [event.payment_id] + ([event.parent_id] if event.parent_id else [])
    found = {row.payment_id: row for row in PaymentEntry.objects.filter(payment_id__in=wanted)}
    existing, parent = found.get(event.payment_id), found.get(event.parent_id) if event.parent_id else None
    if existing is not None:
        existing_parent = found.get(event.parent_id) if event.parent_id else None
        same = (existing.type, existing.customer_id, existing.amount, existing.parent_id) == (
            event.type, event.customer_id, event.amount, existing_parent.pk if existing_parent else None)
        if same:  # republished under a new event_id: nothing new to apply
            return None
        raise PermanentEventError(f"payment {event.payment_id} already exists with other details "
                                  f"({existing.type}, {existing.amount} yen)", "payment_id")
    if event.parent_id is not None:
        if parent is None:
            return Waiting(on=event.parent_id, reason=f"parent {event.parent_id} not received yet")
        _parent_check(event, parent)
        if parent.type not in ENTRY_PARENT_TYPES[event.type]:
            raise PermanentEventError(f"a {event.type} cannot have a {parent.type} as parent", "parent_id")
    state = INITIAL_STATE[event.type]
    now = timezone.now()
    entry = PaymentEntry.objects.create(
        payment_id=event.payment_id, customer_id=event.customer_id, type=event.type, parent=parent,
        root_id=(parent.root_id or parent.pk) if parent else None, amount=event.amount, state=state,
        state_at=event.occurred_at, occurred_at=event.occurred_at, title=event.title,
        attributes=event.attributes, event_id=event.event_id, created_at=now, updated_at=now,
    )
    PaymentTransition.objects.create(
        entry=entry, kind=event.type, from_state="", to_state=state, source_id=event.payment_id,
        event_id=event.event_id, amount=event.amount, occurred_at=event.occurred_at, recorded_at=now,
    )
    inbox_release_waiting(topic_name=TOPIC, key=entry.payment_id)
    return None


def _transition_apply(event: CanonicalEvent) -> Waiting | None:
    entry = PaymentEntry.objects.select_for_update().filter(payment_id=event.parent_id).first()
    if entry is None:
        return Waiting(on=event.parent_id, reason=f"payment {event.parent_id} not received yet")
    _parent_check(event, entry)
    if entry.type not in TRANSITION_TARGET_TYPES[event.type]:
        raise PermanentEventError(f"{event.type} cannot apply to a {entry.type}", "parent_id")
    if PaymentTransition.objects.filter(entry=entry, kind=event.type, source_id=event.payment_id).exists():
        return None  # the same change republished under a new event_id
    decision = transition_decide(entry_type=entry.type, state=entry.state, state_at=entry.state_at,
                                 event_type=event.type, occurred_at=event.occurred_at)
    if decision.action == "wait":
        return Waiting(on=state_key(entry.payment_id, decision.wait_for), reason=decision.reason)
    if decision.action == "reject":
        raise PermanentEventError(decision.reason, "type")
    now = timezone.now()
    transition = PaymentTransition(
        entry=entry, kind=event.type, from_state=entry.state, to_state=decision.to_state,
        source_id=event.payment_id, event_id=event.event_id, amount=event.amount,
        occurred_at=event.occurred_at, recorded_at=now,
    )
    if decision.action == "supersede":
        transition.outcome = PaymentTransition.Outcome.SUPERSEDED
        transition.to_state = entry.state
        transition.note = decision.reason[:300]
        transition.save()
    else:
        PaymentEntry.objects.filter(pk=entry.pk).update(state=decision.to_state, state_at=event.occurred_at,
                                                         updated_at=now)
        transition.save()
    # Events waiting for this step (repayment.completed before its bill) are decided now.
    inbox_release_waiting(topic_name=TOPIC, key=state_key(entry.payment_id, decision.to_state))
    return None
