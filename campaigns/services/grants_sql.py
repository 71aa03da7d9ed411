"""The PostgreSQL statements of points delivery: notifications recorded in bulk, grants picked by id arrays.

Composed once, at import, with `psycopg.sql` (table and column names from the models' `_meta`, data only
ever as parameters) and kept as text, the same on every call. Ids travel as one array literal
(`pg_array`), not one placeholder each: a delivery batch holds up to 5,000 grants.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.db import connection
from django.db.models.expressions import RawSQL
from psycopg import sql

from mercari_ops.common.sql import pg_array

from ..models import CustomerNotification

_NOTIFICATION = {field.attname: sql.Identifier(field.column) for field in CustomerNotification._meta.concrete_fields}

NOTIFICATIONS_INSERT = sql.SQL(
    "INSERT INTO {table} ({customer_id}, {idempotency_key}, {text}, {created_at}) "
    "SELECT u, k, t, %s FROM unnest(%s::varchar[], %s::varchar[], %s::text[]) AS v(u, k, t) "
    "ON CONFLICT ({idempotency_key}) DO NOTHING"
).format(table=sql.Identifier(CustomerNotification._meta.db_table), **_NOTIFICATION).as_string()
IDS = sql.SQL("SELECT unnest(%s::bigint[])").as_string()


def notifications_insert(*, rows: list[tuple[str, str, str]], now: datetime) -> None:
    """Record notifications [(customer_id, idempotency key, text)]; a key recorded before is left alone."""
    if not rows:
        return
    customers, keys, texts = zip(*rows, strict=True)
    with connection.cursor() as cursor:
        cursor.execute(NOTIFICATIONS_INSERT, [now, pg_array(customers), pg_array(keys), pg_array(texts)])


def ids(pks: Iterable[int]) -> RawSQL:
    """The right side of `pk__in` for many ids: one array literal, not a placeholder per id."""
    return RawSQL(IDS, [pg_array(pks)])
