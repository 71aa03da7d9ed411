"""The PostgreSQL statements of loyalty: activity into monthly totals, stage writes, window reads.

Design: the activity handler is the loyalty push endpoint's hot path, and the nightly job and the
recomputation walk every customer, so they run set-based SQL and never build model instances: one
statement per step, ids and values as one array literal per column (`pg_array`, parsed by PostgreSQL
rather than adapted element by element in Python). Every statement is composed here once, at import,
with `psycopg.sql` from pieces -- table and column names from the models' `_meta`, data only ever as
parameters -- and kept as its text: psycopg prepares a statement by its text after `prepare_threshold`
runs on a connection (DATABASES OPTIONS), so the text must be the same on every call.

Lock order: every writer locks customer rows in customer_id order (see `stages.py`).
"""

from __future__ import annotations

from datetime import date, datetime

from django.db import connection
from django.db.models import Model
from psycopg import sql

from mercari_ops.common.sql import pg_array

from ..models import Customer, MonthlyTotal, StageChange, StageRuleVersion

NEW_CUSTOMER = 0  # rules_stage of a row inserted in this transaction, before its first evaluation


def _names(model: type[Model], prefix: str) -> dict[str, sql.Identifier]:
    """{prefix + field attname: column}, plus prefix + "table"; the keys a statement's pieces are formatted with."""
    names = {prefix + field.attname: sql.Identifier(field.column) for field in model._meta.concrete_fields}
    names[prefix + "table"] = sql.Identifier(model._meta.db_table)
    return names


_CUSTOMER = _names(Customer, "c_")  # {c_table}, {c_customer_id}, {c_totals_revision}...
_TOTAL = _names(MonthlyTotal, "t_")  # {t_table}, {t_customer_id}, {t_amount}, {t_count}...
_CHANGE = _names(StageChange, "s_")  # {s_table}, {s_from_stage}...
_VERSION = _names(StageRuleVersion, "v_")  # {v_table}, {v_version}


def _compose(template: str, **pieces: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(**_CUSTOMER, **_TOTAL, **_CHANGE, **_VERSION, **pieces)


# The highest rules version: the rules in force (None until one is published).
_RULES_VERSION = _compose("SELECT MAX({v_version}) FROM {v_table}")
RULES_VERSION = _RULES_VERSION.as_string()

# A customer's window totals per kind: month >= the window's first month, a dozen index rows each.
_WINDOW = _compose('SELECT {t_customer_id}, {t_kind}, SUM({t_amount}), SUM({t_count}) FROM {t_table} '
                   "WHERE {t_customer_id} = ANY(%s::bigint[]) AND {t_month} >= %s GROUP BY {t_customer_id}, {t_kind}")
WINDOW_TOTALS = _WINDOW.as_string()
# The same, after one row (NULL, 'version', the rules version, NULL): the rules and the totals in one round trip.
WINDOW_TOTALS_WITH_VERSION = _compose("SELECT NULL, 'version', ({rules_version}), NULL UNION ALL {window}",
                                      rules_version=_RULES_VERSION, window=_WINDOW).as_string()

# The activity handler's one statement: lock (inserting the missing ones) the customers in customer_id
# order, add the group's sums to their monthly totals, and read their window totals, the rules version
# and whether a concurrent transaction wrote their totals meanwhile (see `activity._customers_totals_window`).
# DO UPDATE, not DO NOTHING, so that existing rows are locked by the same statement, in order.
CUSTOMERS_TOTALS_WINDOW = _compose(
    "WITH c AS (INSERT INTO {c_table} ({c_customer_id}, {c_stage}, {c_rules_stage}, {c_created_at}) "
    "SELECT u.customer_id, {new}, {new}, %s FROM unnest(%s::varchar[]) AS u(customer_id) ORDER BY u.customer_id "
    "ON CONFLICT ({c_customer_id}) DO UPDATE SET {c_totals_revision} = {c_table}.{c_totals_revision} + 1 "
    "RETURNING {c_id}, {c_customer_id}, {c_stage}, {c_rules_stage}, {c_pin_floor}, {c_pin_expires_at}, "
    "{c_totals_revision}), "
    "t AS (INSERT INTO {t_table} ({t_customer_id}, {t_kind}, {t_month}, {t_amount}, {t_count}) "
    "SELECT c.{c_id}, s.kind, s.month, s.amount, s.n "
    "FROM unnest(%s::varchar[], %s::varchar[], %s::date[], %s::bigint[], %s::int[]) "
    "AS s(customer_id, kind, month, amount, n) JOIN c ON c.{c_customer_id} = s.customer_id "
    "ON CONFLICT ({t_customer_id}, {t_kind}, {t_month}) DO UPDATE SET "
    "{t_amount} = {t_table}.{t_amount} + EXCLUDED.{t_amount}, {t_count} = {t_table}.{t_count} + EXCLUDED.{t_count}) "
    "SELECT c.{c_id}, c.{c_customer_id}, c.{c_stage}, c.{c_rules_stage}, c.{c_pin_floor}, c.{c_pin_expires_at}, "
    # the revision as of the snapshot: a primary-key lookup per customer (a join let the planner pick
    # a hash join over a scan of every customer: 0.58 of 1.05 ms for one customer among 2,000)
    "c.{c_totals_revision} = COALESCE((SELECT o.{c_totals_revision} FROM {c_table} o WHERE o.{c_id} = c.{c_id}) "
    "+ 1, 0), "
    "w.kind, w.amount, w.n, ({rules_version}) "
    "FROM c "
    # LATERAL: a dozen index rows per customer, never a scan of the whole table
    "LEFT JOIN LATERAL (SELECT m.{t_kind} AS kind, SUM(m.{t_amount}) AS amount, SUM(m.{t_count}) AS n "
    "FROM {t_table} m WHERE m.{t_customer_id} = c.{c_id} AND m.{t_month} >= %s GROUP BY m.{t_kind}) w ON true",
    new=sql.Literal(NEW_CUSTOMER), rules_version=_RULES_VERSION,
).as_string()

# Stage writes: the customers' new (rules_stage, stage, changed at), then the changes recorded, in one statement.
_STAGES_SET = _compose(
    "WITH u AS (UPDATE {c_table} AS c SET {c_rules_stage} = u.rules_stage, {c_stage} = u.stage, "
    "{c_stage_changed_at} = u.at FROM unnest(%s::bigint[], %s::int[], %s::int[], %s::timestamptz[]) "
    "AS u(id, rules_stage, stage, at) WHERE c.{c_id} = u.id RETURNING c.{c_id}) ")
STAGES_SET = _compose("{stages_set}SELECT count(*) FROM u", stages_set=_STAGES_SET).as_string()
# The columns of a change as `stages_write` takes them, in order.
CHANGE_COLUMNS = ("customer_id", "from_stage", "to_stage", "from_rules_stage", "to_rules_stage", "cause", "reason",
                  "rule_version", "at")
STAGES_SET_AND_RECORD = _compose(
    "{stages_set}INSERT INTO {s_table} ({columns}) SELECT * FROM unnest(%s::bigint[], %s::int[], %s::int[], "
    "%s::int[], %s::int[], %s::varchar[], %s::jsonb[], %s::int[], %s::timestamptz[])",
    stages_set=_STAGES_SET,
    columns=sql.SQL(", ").join(_CHANGE["s_" + name] for name in CHANGE_COLUMNS),
).as_string()

# SHARE mode conflicts with every writer's ROW EXCLUSIVE lock: granted once the running writers have finished.
CUSTOMER_WRITERS_DRAIN = _compose("LOCK TABLE {c_table} IN SHARE MODE").as_string()


def _fetchall(statement: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def rules_version() -> int | None:
    """The highest rules version (None: none published)."""
    return _fetchall(RULES_VERSION, [])[0][0]


def window_totals(*, customer_pks: list[int], start: date, with_version: bool) -> list[tuple]:
    """(customer pk, kind, amount, count) per customer and kind of the window from `start`.

    With `with_version`, a first row (None, 'version', the rules version, None) comes before them.
    """
    return _fetchall(WINDOW_TOTALS_WITH_VERSION if with_version else WINDOW_TOTALS, [pg_array(customer_pks), start])


def customers_totals_window(*, customer_ids: list[str], sums: list[tuple[str, str, date, int, int]],
                            now: datetime, start: date) -> list[tuple]:
    """Run CUSTOMERS_TOTALS_WINDOW: customers (sorted ids) created or locked, `sums` (customer_id, kind, month,
    amount, count) added, and per customer and kind in the window from `start`:
    (pk, customer_id, stage, rules_stage, pin_floor, pin_expires_at, unraced, kind, amount, count, rules version).
    """
    columns = list(zip(*sums, strict=True))
    return _fetchall(CUSTOMERS_TOTALS_WINDOW, [now, pg_array(customer_ids), *(pg_array(column) for column in columns),
                                               start])


def stages_write(*, updates: list[tuple], changes: list[tuple]) -> None:
    """Write (rules_stage, stage, at, pk) per customer and insert the changes (tuples in CHANGE_COLUMNS order)."""
    rules_stages, stages, ats, pks = zip(*updates, strict=True)
    params = [pg_array(pks), pg_array(rules_stages), pg_array(stages), pg_array(ats)]
    if changes:
        params += [pg_array(column) for column in zip(*changes, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(STAGES_SET_AND_RECORD if changes else STAGES_SET, params)


def customer_writers_drain() -> None:
    """Wait until every transaction writing customers has finished (inside the caller's transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(CUSTOMER_WRITERS_DRAIN)
