"""The move of `loyalty_rebucket`: activity counted in its UTC month, re-counted in its business month.

Design: one statement per batch decides and makes the moves, so that no re-run and no crash can move an
event twice. The marker insert (`INSERT ... ON CONFLICT (event_id) DO NOTHING RETURNING`) picks the
events of the batch not moved before; only those reach the totals, in the same statement and transaction.
Like the activity statement (`loyalty_sql.CUSTOMERS_TOTALS_WINDOW`), it first locks (inserting the
missing ones) the customers in customer_id order and bumps their `totals_revision`, so it never deadlocks
with live ingestion and the activity handler sees the write. The totals get one upsert of the net change
per (customer, kind, month): a month can lose one event and gain another in the same batch (30 November
-> December, 31 December -> January), and one INSERT may touch a row only once. Composed once, at import,
with `psycopg.sql` from `_meta` names; data only as parameters (`pg_array` literals).
"""

from __future__ import annotations

from datetime import date, datetime

from django.db import connection
from psycopg import sql

from mercari_ops.common.sql import pg_array

from ..models import Customer, MonthlyTotal, RebucketedEvent
from .loyalty_sql import NEW_CUSTOMER, _names

_CUSTOMER = _names(Customer, "c_")  # {c_table}, {c_customer_id}, {c_totals_revision}...
_TOTAL = _names(MonthlyTotal, "t_")  # {t_table}, {t_amount}, {t_count}...
_MARK = _names(RebucketedEvent, "r_")  # {r_table}, {r_event_id}, {r_old_month}...

MOVE = sql.SQL(
    "WITH e AS (SELECT * FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::bigint[], %s::date[], "
    "%s::date[]) AS e(event_id, customer_id, kind, amount, old_month, new_month)), "
    "moved AS (INSERT INTO {r_table} ({r_event_id}, {r_old_month}, {r_new_month}, {r_moved_at}) "
    "SELECT e.event_id, e.old_month, e.new_month, %s FROM e ORDER BY e.event_id "
    "ON CONFLICT ({r_event_id}) DO NOTHING RETURNING {r_event_id}), "
    "m AS (SELECT e.* FROM e JOIN moved ON moved.{r_event_id} = e.event_id), "
    "c AS (INSERT INTO {c_table} ({c_customer_id}, {c_stage}, {c_rules_stage}, {c_created_at}) "
    "SELECT DISTINCT m.customer_id, {new}, {new}, %s FROM m ORDER BY m.customer_id "
    "ON CONFLICT ({c_customer_id}) DO UPDATE SET {c_totals_revision} = {c_table}.{c_totals_revision} + 1 "
    "RETURNING {c_id}, {c_customer_id}, {c_stage}, {c_rules_stage}, {c_pin_floor}, {c_pin_expires_at}), "
    # as the activity handler counts: the amount, and +1 (-1 for a reversal); taken out of the old month
    "d AS (SELECT m.customer_id, m.kind, m.old_month AS month, -m.amount AS amount, "
    "CASE WHEN m.amount >= 0 THEN -1 ELSE 1 END AS n FROM m UNION ALL "
    "SELECT m.customer_id, m.kind, m.new_month, m.amount, CASE WHEN m.amount >= 0 THEN 1 ELSE -1 END FROM m), "
    "t AS (INSERT INTO {t_table} ({t_customer_id}, {t_kind}, {t_month}, {t_amount}, {t_count}) "
    "SELECT c.{c_id}, d.kind, d.month, SUM(d.amount)::bigint, SUM(d.n)::int FROM d "
    "JOIN c ON c.{c_customer_id} = d.customer_id GROUP BY c.{c_id}, d.kind, d.month "
    "ON CONFLICT ({t_customer_id}, {t_kind}, {t_month}) DO UPDATE SET "
    "{t_amount} = {t_table}.{t_amount} + EXCLUDED.{t_amount}, {t_count} = {t_table}.{t_count} + EXCLUDED.{t_count}) "
    # every moved event has its customer in c: no customer row, nothing moved
    "SELECT c.{c_id}, c.{c_customer_id}, c.{c_stage}, c.{c_rules_stage}, c.{c_pin_floor}, c.{c_pin_expires_at}, "
    "(SELECT count(*) FROM moved) FROM c ORDER BY c.{c_customer_id}"
).format(**_CUSTOMER, **_TOTAL, **_MARK, new=sql.Literal(NEW_CUSTOMER)).as_string()


def events_move(*, moves: list[tuple[str, str, str, int, date, date]], now: datetime) -> tuple[list[tuple], int]:
    """Move (event_id, customer_id, kind, amount, old month, new month) once each: events already marked
    are skipped. Returns the locked customers of the events moved, as (pk, customer_id, stage, rules_stage,
    pin_floor, pin_expires_at) in customer_id order, and how many events moved."""
    if not moves:
        return [], 0
    columns = [pg_array(column) for column in zip(*moves, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(MOVE, [*columns, now, now])
        rows = cursor.fetchall()
    return [row[:-1] for row in rows], (rows[0][-1] if rows else 0)
