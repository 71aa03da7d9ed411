"""The inbox's PostgreSQL statements: the dedupe insert, the hottest statement of the system.

Every push runs `ROW_INSERT` (one event) or, for a group or a backfill batch, `ROWS_INSERT` (three array
parameters instead of 7 placeholders per row: for a 2,000-event batch psycopg's client-side placeholder
parsing cost more than the INSERT itself, and the arrays go as literals, `pg_array`, since psycopg adapts a
list element by element in Python). Both are composed once, at import, with `psycopg.sql` (table and column
names from `InboxEvent._meta`, data only ever as parameters) and kept as text: the same text on every call,
so psycopg prepares each once per connection (server-side binding, DB_PREPARE_THRESHOLD) and a push pays
no composition. Rows are written as processed; other outcomes update them (services/handler.py).
"""

from __future__ import annotations

import json
from datetime import datetime

from django.db import connection
from psycopg import sql

from mercari_ops.common.sql import pg_array

from .models import InboxEvent

_COLUMN = {field.attname: sql.Identifier(field.column) for field in InboxEvent._meta.concrete_fields}
_NAMES = {"table": sql.Identifier(InboxEvent._meta.db_table), **_COLUMN}
_INSERT_INTO = ("INSERT INTO {table} ({topic}, {event_id}, {status}, {payload}, {waiting_on}, {attempts}, "
                "{last_error}, {error_field}, {message_id}, {received_at}, {processed_at}) ")
_ON_CONFLICT = "ON CONFLICT ({topic}, {event_id}) DO NOTHING RETURNING {event_id}, {id}"

ROW_INSERT = sql.SQL(
    _INSERT_INTO + "VALUES (%s, %s, %s, %s, '', 1, '', '', %s, %s, %s) " + _ON_CONFLICT
).format(**_NAMES).as_string()
ROWS_INSERT = sql.SQL(
    _INSERT_INTO + "SELECT %s, e.event_id, %s, e.payload::jsonb, '', 1, '', '', e.message_id, %s, %s "
    "FROM unnest(%s::varchar[], %s::text[], %s::varchar[]) AS e(event_id, payload, message_id) "
    # in event_id order: two groups sharing events (a redelivery racing the first delivery) wait for each
    # other's keys in one order, never in a cycle (unsorted, they deadlocked and one group answered 503)
    "ORDER BY e.event_id " + _ON_CONFLICT
).format(**_NAMES).as_string()
PING = "SELECT 1"

_PAYLOAD = InboxEvent._meta.get_field("payload")


def rows_insert(*, topic: str, events: list[tuple[dict, str]], keep_payload: bool, now: datetime
                ) -> dict[str, int]:
    """Insert (event, message_id) rows of `topic` as processed, skipping keys already recorded.

    Returns {event_id: row id} of the new rows (in event_id order for several, not the caller's: callers
    keep their own order). Without `keep_payload` the payload is SQL NULL (not JSON null), so retention
    and isnull filters see it.
    """
    if not events:
        return {}
    if len(events) == 1:
        [(event, message_id)] = events
        payload = _PAYLOAD.get_db_prep_value(event, connection) if keep_payload else None
        params = [topic, event["event_id"], InboxEvent.Status.PROCESSED, payload, message_id, now, now]
        statement = ROW_INSERT
    else:
        payloads = [json.dumps(event) for event, _ in events] if keep_payload else [None] * len(events)
        params = [topic, InboxEvent.Status.PROCESSED, now, now, pg_array(event["event_id"] for event, _ in events),
                  pg_array(payloads), pg_array(message_id for _, message_id in events)]
        statement = ROWS_INSERT
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return dict(cursor.fetchall())


def database_ping() -> None:
    """One round trip to the database; raises DatabaseError when it is not there."""
    with connection.cursor() as cursor:
        cursor.execute(PING)
