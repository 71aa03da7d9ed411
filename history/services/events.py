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

This is the ingestion hot path, so it is written in SQL rather than the ORM
(the ORM's query compilation cost more CPU than the database work): on
PostgreSQL a new entry costs two statements -- the lock, then one that looks
up the payment and its parent, inserts the entry and its first transition
only if the checks pass, and answers the waiting question -- and a state
change three (the lock, the row-locked read, one write); no model instances.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import NamedTuple

from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from mercari_ops.common.locks import lock_key
from mercari_ops.common.sql import pg_array
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.registry import PermanentEventError, Waiting
from mercari_ops.inbox.services import inbox_release_waiting

from ..canonical import TOPIC, CanonicalEvent, event_canonicalize
from ..models import PaymentEntry, PaymentTransition
from ..states import ENTRY_PARENT_TYPES, INITIAL_STATE, TRANSITION_TARGET_TYPES, transition_decide

ENTRY_TABLE = PaymentEntry._meta.db_table
TRANSITION_TABLE = PaymentTransition._meta.db_table
INBOX_TABLE = InboxEvent._meta.db_table
APPLIED = PaymentTransition.Outcome.APPLIED.value
SUPERSEDED = PaymentTransition.Outcome.SUPERSEDED.value


def customer_lock(*, customer_id: str, cursor=None) -> None:
    """Serialise every history write of one customer until the transaction ends (PostgreSQL).

    SQLite runs write transactions one at a time already (BEGIN IMMEDIATE).
    """
    if connection.vendor != "postgresql":
        return
    if cursor is None:
        with connection.cursor() as cursor:
            customer_lock(customer_id=customer_id, cursor=cursor)
        return
    cursor.execute("SELECT pg_advisory_xact_lock(%s)", [lock_key(f"history:customer:{customer_id}")])


def state_key(payment_id: str, state: str) -> str:
    """The waiting key of an event that needs `payment_id` to reach `state` first."""
    return f"{payment_id}#{state}"


def payment_event_apply(event: dict) -> Waiting | None:
    """Inbox handler: create an entry or move one along its state path; Waiting if what it needs is missing."""
    canonical = event_canonicalize(event)
    with _cursor() as cursor:  # one cursor for the whole event: creating one costs about as much as a query
        customer_lock(customer_id=canonical.customer_id, cursor=cursor)
        applied = (_transition_apply if canonical.is_transition else _entry_create)(canonical, cursor)
    if isinstance(applied, str):  # the key that events wait on: release them (outside this cursor)
        inbox_release_waiting(topic_name=TOPIC, key=applied)
        return None
    return applied


# --- SQL ----------------------------------------------------------------------------------------

# psycopg's default; Django sets None (never prepare) unless DATABASES OPTIONS name a value.
PREPARE_THRESHOLD = 5


def _cursor():
    """A cursor whose repeated statements PostgreSQL parses and plans once per connection.

    With server-side binding (the project's default) psycopg prepares a statement after
    PREPARE_THRESHOLD runs, but only if the connection has a threshold, and Django leaves it at
    None. Planning the handler's CTE statements cost PostgreSQL more than running them: backend CPU
    per event 1.04 ms unprepared, 0.45 ms prepared (docs/benchmarks.md). An explicit
    OPTIONS["prepare_threshold"] (None behind a transaction-pooling pgbouncer < 1.21) is respected.
    """
    if connection.vendor == "postgresql" and "prepare_threshold" not in connection.settings_dict["OPTIONS"]:
        connection.ensure_connection()
        if connection.connection.prepare_threshold is None:
            connection.connection.prepare_threshold = PREPARE_THRESHOLD
    return connection.cursor()


class _Entry(NamedTuple):
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


_ENTRY_COLUMNS = "e.id, e.payment_id, e.customer_id, e.type, e.amount, e.parent_id, e.root_id, e.state, e.state_at"
_ENTRIES_GET = f"SELECT {_ENTRY_COLUMNS} FROM {ENTRY_TABLE} e WHERE e.payment_id IN (%s, %s)"
_TARGET_GET = (
    f"SELECT {_ENTRY_COLUMNS}, EXISTS (SELECT 1 FROM {TRANSITION_TABLE} t WHERE t.entry_id = e.id "
    "AND t.kind = %(kind)s AND t.source_id = %(source_id)s) "
    f"FROM {ENTRY_TABLE} e WHERE e.payment_id = %(payment_id)s"
)
_ENTRY_INSERT = (
    f"INSERT INTO {ENTRY_TABLE} (payment_id, customer_id, type, parent_id, root_id, amount, state, state_at, "
    "occurred_at, title, attributes, event_id, created_at, updated_at) "
    "VALUES (%(payment_id)s, %(customer_id)s, %(type)s, %(parent_id)s, %(root_id)s, %(amount)s, %(state)s, "
    "%(occurred_at)s, %(occurred_at)s, %(title)s, {attributes}, %(event_id)s, %(now)s, %(now)s) RETURNING id"
)
_TRANSITION_COLUMNS = "(entry_id, kind, from_state, to_state, outcome, source_id, event_id, amount, occurred_at, " \
                      "recorded_at, note)"
_TRANSITION_VALUES = ("%(kind)s, %(from_state)s, %(to_state)s, %(outcome)s, %(payment_id)s, %(event_id)s, "
                      "%(amount)s, %(occurred_at)s, %(now)s, %(note)s")
_TRANSITION_INSERT = (f"INSERT INTO {TRANSITION_TABLE} {_TRANSITION_COLUMNS} "
                      f"VALUES (%(entry_id)s, {_TRANSITION_VALUES})")
_STATE_UPDATE = (f"UPDATE {ENTRY_TABLE} SET state = %(to_state)s, state_at = %(occurred_at)s, "
                 "updated_at = %(now)s WHERE id = %(entry_id)s AND %(move)s")
_WAITING = (f"EXISTS (SELECT 1 FROM {INBOX_TABLE} WHERE topic = %(topic)s "
            "AND status = 'waiting' AND waiting_on = %(key)s)")
_ANYONE_WAITING = f"SELECT {_WAITING}"

# PostgreSQL: the writes and the waiting check in one statement (one round trip, prepared once per
# connection). Data-modifying CTEs always run to completion, whatever the outer SELECT reads.
# PostgreSQL, a new entry: the lookup and the writes in one statement. The entry is inserted only when
# the payment is new and its parent (if it names one) exists for the same customer with an allowed
# type -- exactly the checks _entry_decide makes; when nothing was inserted, the rows found say why.
_PG_ENTRY_LOOKUP_CREATE = (
    f"WITH found AS (SELECT {_ENTRY_COLUMNS} FROM {ENTRY_TABLE} e "
    "WHERE e.payment_id IN (%(payment_id)s, %(parent_lookup)s)), "
    "parent AS (SELECT found.id, coalesce(found.root_id, found.id) AS root FROM found "
    "WHERE %(has_parent)s AND found.payment_id = %(parent_lookup)s AND found.customer_id = %(customer_id)s "
    "AND found.type = ANY (%(parent_types)s::varchar[])), "
    f"entry AS ({_ENTRY_INSERT.split(' VALUES ')[0]} "
    "SELECT %(payment_id)s, %(customer_id)s, %(type)s, (SELECT id FROM parent), (SELECT root FROM parent), "
    "%(amount)s, %(state)s, %(occurred_at)s, %(occurred_at)s, %(title)s, %(attributes)s::jsonb, %(event_id)s, "
    "%(now)s, %(now)s "
    "WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.payment_id = %(payment_id)s) "
    "AND (NOT %(has_parent)s OR EXISTS (SELECT 1 FROM parent)) RETURNING id), "
    f"transition AS (INSERT INTO {TRANSITION_TABLE} {_TRANSITION_COLUMNS} "
    f"SELECT entry.id, {_TRANSITION_VALUES} FROM entry) "
    f"SELECT EXISTS (SELECT 1 FROM entry), {_WAITING}, found.* FROM (SELECT 1) AS one LEFT JOIN found ON true"
)
_PG_TRANSITION_RECORD = f"WITH moved AS ({_STATE_UPDATE}), transition AS ({_TRANSITION_INSERT}) {_ANYONE_WAITING}"
# Elsewhere (SQLite): the same steps one by one.
_ENTRY_INSERT_PLAIN = _ENTRY_INSERT.format(attributes="%(attributes)s")
_ENTRY_CREATE_STEPS = (_ENTRY_INSERT_PLAIN, _TRANSITION_INSERT, _ANYONE_WAITING)
_TRANSITION_RECORD_STEPS = (_STATE_UPDATE, _TRANSITION_INSERT, _ANYONE_WAITING)


def _datetime(value) -> datetime:
    """A timestamp column read with a raw cursor: aware on PostgreSQL, text in UTC on SQLite."""
    if isinstance(value, str):
        value = parse_datetime(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _entry(row) -> _Entry:
    return _Entry(*row[:8], _datetime(row[8]), *row[9:])


def _write(cursor, pg_sql: str | None, steps: tuple[str, ...], params: dict) -> bool:
    """Run the writes; True when an event waits on params["key"] (release it).

    On PostgreSQL `pg_sql` does them all in one statement (a new entry has its own, which also looks up);
    elsewhere the steps run one by one, and an entry insert hands its id to the next step.
    """
    if connection.vendor == "postgresql":
        cursor.execute(pg_sql, params)
    else:
        for sql in steps:
            cursor.execute(sql, params)
            if sql is _ENTRY_INSERT_PLAIN:
                params["entry_id"] = cursor.fetchone()[0]
    return bool(cursor.fetchone()[0])


def _sql_datetime(value: datetime):
    return connection.ops.adapt_datetimefield_value(value)


# --- the handler ---------------------------------------------------------------------------------


def _parent_check(event: CanonicalEvent, parent: _Entry) -> None:
    if parent.customer_id != event.customer_id:
        raise PermanentEventError(f"parent {event.parent_id} belongs to another customer", "customer_id")


def _entry_decide(event: CanonicalEvent, existing: _Entry | None, parent: _Entry | None) -> Waiting | None | bool:
    """True when the entry is to be created; else None (already there) or Waiting; PermanentEventError if invalid."""
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
    return True


def _entry_create(event: CanonicalEvent, cursor) -> Waiting | str | None:
    """Waiting, or the key to release when events wait on the new entry, or None."""
    state = str(INITIAL_STATE[event.type])
    params = {
        "payment_id": event.payment_id, "customer_id": event.customer_id, "type": event.type,
        "amount": event.amount, "state": state,
        "occurred_at": _sql_datetime(event.occurred_at), "title": event.title,
        "attributes": json.dumps(event.attributes), "event_id": event.event_id,
        "now": _sql_datetime(timezone.now()), "kind": event.type, "from_state": "", "to_state": state,
        "outcome": APPLIED, "note": "", "topic": TOPIC, "key": event.payment_id,
        # One lookup for both the payment itself (a republished event) and its parent.
        "parent_lookup": event.parent_id or event.payment_id,
    }
    if connection.vendor == "postgresql":
        params.update(has_parent=event.parent_id is not None,
                      parent_types=pg_array(sorted(ENTRY_PARENT_TYPES[event.type])))
        cursor.execute(_PG_ENTRY_LOOKUP_CREATE, params)
        rows = cursor.fetchall()
        created, waiting = rows[0][0], rows[0][1]
        if created:
            return event.payment_id if waiting else None
        found = {row[3]: _entry(row[2:]) for row in rows if row[2] is not None}
    else:
        cursor.execute(_ENTRIES_GET, [event.payment_id, params["parent_lookup"]])
        found = {row[1]: _entry(row) for row in cursor.fetchall()}
    existing, parent = found.get(event.payment_id), found.get(event.parent_id) if event.parent_id else None
    decision = _entry_decide(event, existing, parent)
    if decision is not True:
        return decision
    if connection.vendor == "postgresql":  # the statement's checks and _entry_decide disagree: a bug, not data
        raise RuntimeError(f"payment {event.payment_id}: valid, but the entry was not inserted")
    params.update(parent_id=parent.id if parent else None, root_id=(parent.root_id or parent.id) if parent else None)
    waiting = _write(cursor, None, _ENTRY_CREATE_STEPS, params)
    return event.payment_id if waiting else None


def _transition_apply(event: CanonicalEvent, cursor) -> Waiting | str | None:
    """Waiting, or the key to release when events wait on the state reached, or None."""
    # Row-locked: the repay API moves the same entry without the customer lock.
    lock = " FOR UPDATE OF e" if connection.features.has_select_for_update_of else ""
    cursor.execute(_TARGET_GET + lock, {"payment_id": event.parent_id, "kind": event.type,
                                        "source_id": event.payment_id})
    row = cursor.fetchone()
    if row is None:
        return Waiting(on=event.parent_id, reason=f"payment {event.parent_id} not received yet")
    entry = _entry(row)
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
    params = {
        "entry_id": entry.id, "kind": event.type, "from_state": entry.state,
        "to_state": entry.state if superseded else str(decision.to_state), "move": not superseded,
        "outcome": SUPERSEDED if superseded else APPLIED, "payment_id": event.payment_id,
        "event_id": event.event_id, "amount": event.amount, "occurred_at": _sql_datetime(event.occurred_at),
        "now": _sql_datetime(timezone.now()), "note": decision.reason[:300] if superseded else "",
        "topic": TOPIC, "key": key,
    }
    waiting = _write(cursor, _PG_TRANSITION_RECORD, _TRANSITION_RECORD_STEPS, params)
    # Events waiting for this step (repayment.completed before its bill) are decided now.
    return key if waiting else None
