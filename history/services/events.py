"""Applying payment events: the inbox handler of the `payment-events` topic.

Runs inside the inbox transaction that records the event. Every event of a
customer takes that customer's transaction-scoped advisory lock first, so a
child that finds its parent missing (and parks as waiting) can never
interleave with the parent's insert and its release of waiting children:
whichever commits first, the other sees it. The same lock makes a cheap
check possible: once it is held, every event of this customer that parked
has committed, so "does anything wait on this payment?" is answered by one
EXISTS in the write statement, and the inbox's release runs only when the
answer is yes (about one event in ten in a stream with early children).

This is the ingestion hot path, so it runs the SQL of `history_sql` rather
than the ORM: a new entry costs two statements -- the lock, then one that
looks up the payment and its parent, inserts the entry and its first
transition only if the checks pass, and answers the waiting question -- and
a state change three (the lock, the row-locked read, one write); no model
instances. The statements are prepared per connection by psycopg once they
ran DATABASES OPTIONS["prepare_threshold"] times (settings).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import NamedTuple

from django.db import connection
from django.utils import timezone

from mercari_ops.common.locks import lock_key
from mercari_ops.inbox.registry import PermanentEventError, Waiting
from mercari_ops.inbox.services import inbox_release_waiting

from ..canonical import TOPIC, CanonicalEvent, event_canonicalize
from ..metrics import event_visible_counted
from ..models import PaymentTransition
from ..states import ENTRY_PARENT_TYPES, INITIAL_STATE, TRANSITION_TARGET_TYPES, transition_decide
from . import history_sql

APPLIED = PaymentTransition.Outcome.APPLIED.value
SUPERSEDED = PaymentTransition.Outcome.SUPERSEDED.value


def customer_lock(*, customer_id: str, cursor=None) -> None:
    """Serialise every history write of one customer until the transaction ends."""
    if cursor is None:
        with connection.cursor() as cursor:
            customer_lock(customer_id=customer_id, cursor=cursor)
        return
    history_sql.customer_lock(cursor, key=lock_key(f"history:customer:{customer_id}"))


def state_key(payment_id: str, state: str) -> str:
    """The waiting key of an event that needs `payment_id` to reach `state` first."""
    return f"{payment_id}#{state}"


def payment_event_apply(event: dict) -> Waiting | None:
    """Inbox handler: create an entry or move one along its state path; Waiting if what it needs is missing."""
    canonical = event_canonicalize(event)
    with connection.cursor() as cursor:  # one cursor for the whole event: creating one costs about as much as a query
        customer_lock(customer_id=canonical.customer_id, cursor=cursor)
        applied = (_transition_apply if canonical.is_transition else _entry_create)(canonical, cursor)
    if not isinstance(applied, Waiting):
        event_visible_counted(canonical.occurred_at)
    if isinstance(applied, str):  # the key that events wait on: release them (outside this cursor)
        inbox_release_waiting(topic_name=TOPIC, key=applied)
        return None
    return applied


class _Entry(NamedTuple):
    """An entry row as `history_sql` returns it."""

    id: int
    payment_id: str
    customer_id: str
    type: str
    amount: int
    parent_id: int | None
    root_id: int | None
    state: str
    state_at: datetime
    # transition lookups only: the same change (kind, source) is already recorded
    recorded: bool = False


# --- the handler ---------------------------------------------------------------------------------


def _parent_check(event: CanonicalEvent, parent: _Entry) -> None:
    if parent.customer_id != event.customer_id:
        raise PermanentEventError(f"parent {event.parent_id} belongs to another customer", "customer_id")


def _entry_refusal(event: CanonicalEvent, existing: _Entry | None, parent: _Entry | None) -> Waiting | None:
    """Why the entry statement inserted nothing: None (already there), Waiting, or PermanentEventError.

    The statement inserts exactly when the payment is new and its parent, if it names one, exists for
    the same customer with a type of ENTRY_PARENT_TYPES; this says which of those failed.
    """
    if existing is not None:
        same = (existing.type, existing.customer_id, existing.amount, existing.parent_id) == (
            event.type, event.customer_id, event.amount, parent.id if parent else None)
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
    # the statement's checks and this function disagree: a bug, not data
    raise RuntimeError(f"payment {event.payment_id}: valid, but the entry was not inserted")


def _entry_create(event: CanonicalEvent, cursor) -> Waiting | str | None:
    """Waiting, or the key to release when events wait on the new entry, or None."""
    created, waiting, found_rows = history_sql.entry_lookup_create(
        cursor, payment_id=event.payment_id, customer_id=event.customer_id, type=event.type, amount=event.amount,
        state=str(INITIAL_STATE[event.type]), occurred_at=event.occurred_at, title=event.title,
        attributes_json=json.dumps(event.attributes), event_id=event.event_id, now=timezone.now(),
        parent_id=event.parent_id, parent_types=ENTRY_PARENT_TYPES[event.type], topic=TOPIC,
    )
    if created:
        return event.payment_id if waiting else None
    found = {row[1]: _Entry(*row) for row in found_rows}
    parent = found.get(event.parent_id) if event.parent_id else None
    return _entry_refusal(event, found.get(event.payment_id), parent)


def _transition_apply(event: CanonicalEvent, cursor) -> Waiting | str | None:
    """Waiting, or the key to release when events wait on the state reached, or None."""
    row = history_sql.transition_target_lock(cursor, payment_id=event.parent_id, kind=event.type,
                                             source_id=event.payment_id)
    if row is None:
        return Waiting(on=event.parent_id, reason=f"payment {event.parent_id} not received yet")
    entry = _Entry(*row)
    _parent_check(event, entry)
    if entry.type not in TRANSITION_TARGET_TYPES[event.type]:
        raise PermanentEventError(f"{event.type} cannot apply to a {entry.type}", "parent_id")
    if entry.recorded:
        return None  # the same change republished under a new event_id
    decision = transition_decide(entry_type=entry.type, state=entry.state, state_at=entry.state_at,
                                 event_type=event.type, occurred_at=event.occurred_at)
    if decision.action == "wait":
        return Waiting(on=state_key(entry.payment_id, decision.wait_for), reason=decision.reason)
    if decision.action == "reject":
        raise PermanentEventError(decision.reason, "type")
    superseded = decision.action == "supersede"
    key = state_key(entry.payment_id, decision.to_state)
    waiting = history_sql.transition_record(
        cursor, entry_id=entry.id, kind=event.type, from_state=entry.state,
        to_state=entry.state if superseded else str(decision.to_state), move=not superseded,
        outcome=SUPERSEDED if superseded else APPLIED, source_id=event.payment_id, event_id=event.event_id,
        amount=event.amount, occurred_at=event.occurred_at, now=timezone.now(),
        note=decision.reason[:300] if superseded else "", topic=TOPIC, key=key,
    )
    # Events waiting for this step (repayment.completed before its bill) are decided now.
    return key if waiting else None
