"""The PostgreSQL statements of the payment history: the ingest handler's writes and the feed's reads.

Design: the handler and the feed are hot paths (ingest and read p99 under 10 ms), so they run SQL
rather than the ORM (building the ORM's queries cost more CPU than the database work) and never build
model instances. Every statement is composed here once, at import, with `psycopg.sql` from pieces --
table and column names from the models' `_meta`, data only ever as parameters -- and kept as its
text: psycopg prepares a statement by its text after `prepare_threshold` runs on a connection
(DATABASES OPTIONS), so the text must be the same on every call.

Writes (one customer's events serialise on `customer_lock`, see `events.py`): a new entry costs the lock
and `entry_lookup_create`; a state change the lock, `transition_target_lock` and `transition_record`.
Data-modifying CTEs always run to completion, whatever the outer SELECT reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models import Model
from psycopg import sql

from mercari_ops.common.sql import pg_array
from mercari_ops.inbox.models import InboxEvent

from ..models import PaymentEntry, PaymentTransition


def _names(model: type[Model], prefix: str = "") -> dict[str, sql.Identifier]:
    """{prefix + field attname: column}, plus prefix + "table"; the keys a statement's pieces are formatted with."""
    names = {prefix + field.attname: sql.Identifier(field.column) for field in model._meta.concrete_fields}
    names[prefix + "table"] = sql.Identifier(model._meta.db_table)
    return names


def _compose(template: str, **pieces: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(**_ENTRY, **_TRANSITION, **_INBOX, **pieces)


_ENTRY = _names(PaymentEntry)  # {table}, {payment_id}, {parent_id}...
_TRANSITION = _names(PaymentTransition, "t_")  # {t_table}, {t_entry_id}...
_INBOX = _names(InboxEvent, "inbox_")  # {inbox_table}, {inbox_status}...

# --- writes: the inbox handler of `payment-events` -------------------------------------------------

# The columns of an entry as `events._Entry` takes them, in its order.
_ENTRY_ROW = _compose("e.{id}, e.{payment_id}, e.{customer_id}, e.{type}, e.{amount}, e.{parent_id}, e.{root_id}, "
                      "e.{state}, e.{state_at}")
_TRANSITION_COLUMNS = _compose("({t_entry_id}, {t_kind}, {t_from_state}, {t_to_state}, {t_outcome}, {t_source_id}, "
                               "{t_event_id}, {t_amount}, {t_occurred_at}, {t_recorded_at}, {t_note})")
# Every column of a transition after entry_id; the entry's id comes first, from where the statement has it.
_TRANSITION_VALUES = sql.SQL("%(kind)s, %(from_state)s, %(to_state)s, %(outcome)s, %(payment_id)s, %(event_id)s, "
                             "%(amount)s, %(occurred_at)s, %(now)s, %(note)s")
# True when an event of the topic waits on %(key)s: the inbox's release runs only then.
_WAITING = _compose("EXISTS (SELECT 1 FROM {inbox_table} WHERE {inbox_topic} = %(topic)s "
                    "AND {inbox_status} = {waiting} AND {inbox_waiting_on} = %(key)s)",
                    waiting=sql.Literal(InboxEvent.Status.WAITING.value))

CUSTOMER_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)").as_string()

# A new entry: the lookup and the writes in one statement. The entry (and its first transition) is
# inserted only when the payment is new and its parent, when it names one, exists for the same
# customer with one of the parent types the caller passes; when nothing was inserted, the rows found
# (the payment itself, the parent) let the caller say why.
ENTRY_LOOKUP_CREATE = _compose(
    "WITH found AS (SELECT {entry_row} FROM {table} e WHERE e.{payment_id} IN (%(payment_id)s, %(parent_lookup)s)), "
    "parent AS (SELECT found.{id}, coalesce(found.{root_id}, found.{id}) AS root FROM found "
    "WHERE %(has_parent)s AND found.{payment_id} = %(parent_lookup)s AND found.{customer_id} = %(customer_id)s "
    "AND found.{type} = ANY (%(parent_types)s::varchar[])), "
    "entry AS (INSERT INTO {table} ({payment_id}, {customer_id}, {type}, {parent_id}, {root_id}, {amount}, {state}, "
    "{state_at}, {occurred_at}, {title}, {attributes}, {event_id}, {created_at}, {updated_at}) "
    "SELECT %(payment_id)s, %(customer_id)s, %(type)s, (SELECT {id} FROM parent), (SELECT root FROM parent), "
    "%(amount)s, %(state)s, %(occurred_at)s, %(occurred_at)s, %(title)s, %(attributes)s::jsonb, %(event_id)s, "
    "%(now)s, %(now)s "
    "WHERE NOT EXISTS (SELECT 1 FROM found WHERE found.{payment_id} = %(payment_id)s) "
    "AND (NOT %(has_parent)s OR EXISTS (SELECT 1 FROM parent)) RETURNING {id}), "
    "transition AS (INSERT INTO {t_table} {transition_columns} SELECT entry.{id}, {transition_values} FROM entry) "
    "SELECT EXISTS (SELECT 1 FROM entry), {waiting}, found.* FROM (SELECT 1) AS one LEFT JOIN found ON true",
    entry_row=_ENTRY_ROW, transition_columns=_TRANSITION_COLUMNS, transition_values=_TRANSITION_VALUES,
    waiting=_WAITING,
).as_string()

# The entry a transition event targets, row-locked (the repay API moves entries without the customer
# lock), and whether this change (kind, source) is recorded already.
TRANSITION_TARGET_LOCK = _compose(
    "SELECT {entry_row}, EXISTS (SELECT 1 FROM {t_table} t WHERE t.{t_entry_id} = e.{id} "
    "AND t.{t_kind} = %(kind)s AND t.{t_source_id} = %(source_id)s) "
    "FROM {table} e WHERE e.{payment_id} = %(payment_id)s FOR UPDATE OF e",
    entry_row=_ENTRY_ROW,
).as_string()

# A state change (or, with move false, a superseded one: recorded, state left alone) in one statement.
TRANSITION_RECORD = _compose(
    "WITH moved AS (UPDATE {table} SET {state} = %(to_state)s, {state_at} = %(occurred_at)s, "
    "{updated_at} = %(now)s WHERE {id} = %(entry_id)s AND %(move)s), "
    "transition AS (INSERT INTO {t_table} {transition_columns} VALUES (%(entry_id)s, {transition_values})) "
    "SELECT {waiting}",
    transition_columns=_TRANSITION_COLUMNS, transition_values=_TRANSITION_VALUES, waiting=_WAITING,
).as_string()


def customer_lock(cursor, *, key: int) -> None:
    cursor.execute(CUSTOMER_LOCK, [key])


def entry_lookup_create(cursor, *, payment_id: str, customer_id: str, type: str, amount: int, state: str,
                        occurred_at: datetime, title: str, attributes_json: str, event_id: str, now: datetime,
                        parent_id: str | None, parent_types: Iterable[str], topic: str,
                        ) -> tuple[bool, bool, list[tuple]]:
    """(created, an event waits on payment_id, [entry rows found: the payment itself, its parent])."""
    cursor.execute(ENTRY_LOOKUP_CREATE, {
        "payment_id": payment_id, "customer_id": customer_id, "type": type, "amount": amount, "state": state,
        "occurred_at": occurred_at, "title": title, "attributes": attributes_json, "event_id": event_id,
        "now": now, "kind": type, "from_state": "", "to_state": state,
        "outcome": PaymentTransition.Outcome.APPLIED.value, "note": "", "topic": topic, "key": payment_id,
        # One lookup for both the payment itself (a republished event) and its parent.
        "parent_lookup": parent_id or payment_id, "has_parent": parent_id is not None,
        "parent_types": pg_array(sorted(parent_types)),
    })
    rows = cursor.fetchall()
    return rows[0][0], rows[0][1], [row[2:] for row in rows if row[2] is not None]


def transition_target_lock(cursor, *, payment_id: str, kind: str, source_id: str) -> tuple | None:
    """The entry row (as in ENTRY_LOOKUP_CREATE) plus "this change is recorded already"; None when unknown."""
    cursor.execute(TRANSITION_TARGET_LOCK, {"payment_id": payment_id, "kind": kind, "source_id": source_id})
    return cursor.fetchone()


def transition_record(cursor, *, entry_id: int, kind: str, from_state: str, to_state: str, move: bool,
                      outcome: str, source_id: str, event_id: str, amount: int, occurred_at: datetime,
                      now: datetime, note: str, topic: str, key: str) -> bool:
    """Record the transition (and move the entry's state when `move`); True when an event waits on `key`."""
    cursor.execute(TRANSITION_RECORD, {
        "entry_id": entry_id, "kind": kind, "from_state": from_state, "to_state": to_state, "move": move,
        "outcome": outcome, "payment_id": source_id, "event_id": event_id, "amount": amount,
        "occurred_at": occurred_at, "now": now, "note": note, "topic": topic, "key": key,
    })
    return bool(cursor.fetchone()[0])


# --- reads: the feed and one payment's family ------------------------------------------------------

# Timestamps come formatted by the database as datetime.isoformat() writes them in UTC (a fraction only
# when not zero) with Z for +00:00: loading them as datetimes (Django's timezone-replacing loader) and
# formatting them again was most of a page's CPU after the ORM's. Attributes come as JSON text.
_ISO_UTC = ("CASE WHEN date_trunc('second', ({column} AT TIME ZONE 'UTC')) = ({column} AT TIME ZONE 'UTC') "
            """THEN to_char(({column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:MI:SS"Z"') """
            """ELSE to_char(({column} AT TIME ZONE 'UTC'), 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') END""")
# The names of the columns of FEED_PAGE's and FAMILY's rows, in order.
ROW_NAMES = ("id", "payment_id", "type", "parent_id", "root_id", "amount", "state", "state_at", "occurred_at",
             "title", "attributes")
_ROW = _compose(
    "p.{id}, p.{payment_id}, p.{type}, p.{parent_id}, p.{root_id}, p.{amount}, p.{state}, {state_at_iso}, "
    "{occurred_at_iso}, p.{title}, p.{attributes}::text",
    state_at_iso=sql.SQL(_ISO_UTC).format(column=_compose("p.{state_at}")),
    occurred_at_iso=sql.SQL(_ISO_UTC).format(column=_compose("p.{occurred_at}")),
)
_ROW_RAW = _compose("{id}, {payment_id}, {type}, {parent_id}, {root_id}, {amount}, {state}, {state_at}, "
                    "{occurred_at}, {title}, {attributes}")


def _feed_page(keyset: sql.Composable) -> str:
    """A page of a customer's top-level entries (keyset on the history_entry_feed index) and all their descendants.

    Parameters: customer_id, the keyset's (if any), then the limit.
    """
    return _compose(
        "WITH top AS (SELECT {id} FROM {table} WHERE {customer_id} = %s AND {parent_id} IS NULL{keyset} "
        "ORDER BY {occurred_at} DESC, {id} DESC LIMIT %s), "
        "page AS (SELECT {row_raw} FROM {table} WHERE {id} IN (SELECT {id} FROM top) "
        "UNION ALL SELECT {row_raw} FROM {table} WHERE {root_id} IN (SELECT {id} FROM top)) "
        "SELECT {row} FROM page p ORDER BY p.{occurred_at}, p.{id}",
        keyset=keyset, row_raw=_ROW_RAW, row=_ROW,
    ).as_string()


FEED_PAGE = _feed_page(sql.SQL(""))
# After (occurred_at, id): occurred_at <= t bounds the index range; the OR only breaks ties on equal times.
FEED_PAGE_AFTER = _feed_page(_compose(" AND {occurred_at} <= %s AND ({occurred_at} < %s OR ({occurred_at} = %s "
                                      "AND {id} < %s))"))
FAMILY = _compose("SELECT {row} FROM {table} p WHERE p.{root_id} = %s OR p.{id} = %s ORDER BY p.{occurred_at}, p.{id}",
                  row=_ROW).as_string()
ENTRY_LOCATE = _compose("SELECT {id}, {root_id}, {customer_id} FROM {table} WHERE {payment_id} = %s").as_string()


def _fetchall(statement: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def feed_page(*, customer_id: str, limit: int, after: tuple[datetime, int] | None = None) -> list[tuple]:
    """Rows (ROW_NAMES) of up to `limit` top-level entries older than `after` with their descendants.

    Ordered by (occurred_at, id); `after` is a page cursor (occurred_at, id).
    """
    if after is None:
        return _fetchall(FEED_PAGE, [customer_id, limit])
    at, pk = after
    return _fetchall(FEED_PAGE_AFTER, [customer_id, at, at, at, pk, limit])


def family(*, root_pk: int) -> list[tuple]:
    """Rows (ROW_NAMES) of a top-level entry and all its descendants, by (occurred_at, id)."""
    return _fetchall(FAMILY, [root_pk, root_pk])


def entry_locate(*, payment_id: str) -> tuple[int, int | None, str] | None:
    """(pk, root pk, customer_id) of a payment; None when unknown."""
    rows = _fetchall(ENTRY_LOCATE, [payment_id])
    return rows[0] if rows else None
