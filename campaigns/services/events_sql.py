"""The PostgreSQL statement of the `card-status` handler: newest status per customer, one upsert per batch.

Composed with `psycopg.sql` (table and column names from `CardStatus._meta`, data only ever as
parameters), once per number of rows a batch brings, and kept as text: a batch of n customers always
sends the same statement.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from django.db import connection
from psycopg import sql

from ..models import CardStatus

_CARD_STATUS = {field.attname: sql.Identifier(field.column) for field in CardStatus._meta.concrete_fields}


@lru_cache(maxsize=256)
def _card_status_upsert(rows: int) -> str:
    """An older changed_at never overwrites a newer one (the WHERE of the conflict's update)."""
    return sql.SQL(
        "INSERT INTO {table} ({customer_id}, {mercard_status}, {changed_at}, {event_id}) VALUES {values} "
        "ON CONFLICT ({customer_id}) DO UPDATE SET {mercard_status} = excluded.{mercard_status}, "
        "{changed_at} = excluded.{changed_at}, {event_id} = excluded.{event_id} "
        "WHERE {table}.{changed_at} < excluded.{changed_at}"
    ).format(table=sql.Identifier(CardStatus._meta.db_table),
             values=sql.SQL(", ").join([sql.SQL("(%s, %s, %s, %s)")] * rows), **_CARD_STATUS).as_string()


def card_statuses_upsert(*, rows: list[tuple[str, int, datetime, str]]) -> None:
    """Upsert [(customer_id, mercard_status, changed_at, event_id)], one row per customer."""
    if not rows:
        return
    with connection.cursor() as cursor:
        cursor.execute(_card_status_upsert(len(rows)), [value for row in rows for value in row])
