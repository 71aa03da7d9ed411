"""The PostgreSQL statements of a settlement batch: one set-based statement per step, no model instances.

A batch of 500-2,000 bills costs a fixed ~10 statements whatever its size: ids and values travel as one
array literal per column (`pg_array`, parsed by PostgreSQL, not adapted element by element in Python),
rewards go in with COPY. Every statement is composed once, at import, with `psycopg.sql` from pieces
(table and column names from the models' `_meta`, data only ever as parameters) and kept as its text,
the same on every call, so psycopg can prepare it.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Model
from psycopg import sql

from mercari_ops.common.sql import pg_array

from ..models import Bill, BillLine, CampaignBudget, CampaignReward, PointsGrant


def _names(model: type[Model]) -> dict[str, sql.Identifier]:
    """{field attname: column} plus "table": the names a statement's template is formatted with."""
    names = {field.attname: sql.Identifier(field.column) for field in model._meta.concrete_fields}
    names["table"] = sql.Identifier(model._meta.db_table)
    return names


def _compose(model: type[Model], template: str, **pieces: sql.Composable) -> sql.Composed:
    return sql.SQL(template).format(**_names(model), **pieces)


def _statement(model: type[Model], template: str, **pieces: sql.Composable) -> str:
    """The statement's text, composed once: the same text on every call, so psycopg can prepare it."""
    return _compose(model, template, **pieces).as_string()


def _column_list(model: type[Model], attnames: Iterable[str]) -> sql.Composed:
    names = _names(model)
    return sql.SQL(", ").join(names[attname] for attname in attnames)


# The order of a bill line's tuple, as `lines_read` returns it and `settlement.lines_plan` takes it.
LINE_FIELDS = ("bill_id", "payment_id", "customer_id", "amount", "merchant_id", "payment_method", "channel",
               "paid_at")
REWARD_COLUMNS = ("campaign_id", "campaign_version", "customer_id", "payment_id", "bill_id", "grant_id", "stage",
                  "rate", "amount", "points", "capped", "settled_at", "created_at")


def _bills_lock_statement(*, only_pending: bool, lock: bool) -> str:
    return _statement(
        Bill, "SELECT {id}, {bill_id}, {settled_at}, {processed_at} FROM {table} WHERE {id} = ANY(%s::bigint[])"
        "{pending}{lock}",
        pending=_compose(Bill, " AND {status} = %s") if only_pending else sql.SQL(""),
        lock=sql.SQL(" FOR UPDATE SKIP LOCKED") if lock else sql.SQL(""),
    )


BILLS_LOCK = {(only_pending, lock): _bills_lock_statement(only_pending=only_pending, lock=lock)
              for only_pending in (False, True) for lock in (False, True)}
# paid_at as UTC wall time: see lines_read.
LINES_READ = _statement(
    BillLine, "SELECT {columns} FROM {table} WHERE {bill_id} = ANY(%s::bigint[])",
    columns=sql.SQL(", ").join(_compose(BillLine, "{paid_at} AT TIME ZONE 'UTC'") if attname == "paid_at"
                               else _names(BillLine)[attname] for attname in LINE_FIELDS),
)
REWARDS_EXISTING = _statement(CampaignReward, "SELECT {campaign_id}, {payment_id} FROM {table} "
                                              "WHERE {bill_id} = ANY(%s::bigint[])")
# Through the (campaign, payment) unique index: one probe per pair.
REWARDS_OF_PAYMENTS = _statement(CampaignReward, "SELECT {campaign_id}, {payment_id}, {bill_id} FROM {table} "
                                                 "WHERE {campaign_id} = ANY(%s::bigint[]) "
                                                 "AND {payment_id} = ANY(%s::varchar[])")
BUDGETS_LOCK = _statement(
    CampaignBudget,
    "INSERT INTO {table} AS b ({campaign_id}, {customer_id}, {points}) "
    "SELECT c, u, 0 FROM unnest(%s::bigint[], %s::varchar[]) WITH ORDINALITY AS v(c, u, n) ORDER BY n "
    "ON CONFLICT ({campaign_id}, {customer_id}) DO UPDATE SET {points} = b.{points} "
    "RETURNING b.{id}, b.{campaign_id}, b.{customer_id}, b.{points}",
)
BUDGETS_UPDATE = _statement(
    CampaignBudget,
    "INSERT INTO {table} AS b ({campaign_id}, {customer_id}, {points}) "
    "SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[]) "
    "ON CONFLICT ({campaign_id}, {customer_id}) DO UPDATE SET {points} = EXCLUDED.{points}",
)
GRANTS_INSERT = _statement(
    PointsGrant,
    "INSERT INTO {table} ({bill_id}, {customer_id}, {points}, {idempotency_key}, {status}, {attempts}, "
    "{next_attempt_at}, {last_error}, {created_at}, {notified_via}) "
    "SELECT b, u, p, k, %s, 0, %s, '', %s, '' FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[], "
    "%s::varchar[]) WITH ORDINALITY AS v(b, u, p, k, n) ORDER BY n RETURNING {id}, {bill_id}",
)
GRANT_PASSES = _statement(PointsGrant, "SELECT {bill_id}, count(*) FROM {table} WHERE {bill_id} = ANY(%s::bigint[]) "
                                       "GROUP BY {bill_id}")
REWARDS_COPY = _statement(CampaignReward, "COPY {table} ({columns}) FROM STDIN",
                          columns=_column_list(CampaignReward, REWARD_COLUMNS))
BILLS_MARK_SETTLED = _statement(
    Bill,
    "UPDATE {table} AS b SET {status} = %s, {processed_at} = %s, "
    "{unmatched_lines} = CASE WHEN v.n > 0 THEN v.n ELSE b.{unmatched_lines} END "
    "FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE b.{id} = v.id",
)


def _rows(statement: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall()


def _execute(statement: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def bills_lock(*, bill_ids: list[int], only_pending: bool, lock: bool) -> dict[int, tuple]:
    """{pk: (bill_id, settled_at, processed_at)}; locked FOR UPDATE SKIP LOCKED unless `lock` is False (dry run)."""
    params: list = [pg_array(bill_ids)]
    if only_pending:
        params.append(Bill.Status.PENDING.value)
    rows = _rows(BILLS_LOCK[(only_pending, lock)], params)
    return {pk: (bill_id, settled_at, processed_at) for pk, bill_id, settled_at, processed_at in rows}


def lines_read(*, bill_pks: list[int]) -> list[tuple]:
    """The bills' lines as tuples in LINE_FIELDS order (paid_at an aware UTC datetime).

    paid_at comes as UTC wall time and gets its zone here: Django's loader for timestamptz parses in
    Python and took half the time of reading the lines; psycopg parses a plain timestamp in C.
    """
    rows = _rows(LINES_READ, [pg_array(bill_pks)])
    return [(bill, payment, customer, amount, merchant, method, channel, paid_at.replace(tzinfo=UTC))
            for bill, payment, customer, amount, merchant, method, channel, paid_at in rows]


def rewards_existing(*, bill_pks: list[int]) -> set[tuple[int, str]]:
    """(campaign, payment) pairs the bills already have rewards for."""
    return set(_rows(REWARDS_EXISTING, [pg_array(bill_pks)]))


def rewards_of_payments(*, campaign_ids: list[int], payment_ids: Iterable[str]) -> dict[tuple[int, str], int]:
    """{(campaign, payment): bill pk} of the rewards already written for these payments, on any bill."""
    payment_ids = sorted(payment_ids)
    if not campaign_ids or not payment_ids:
        return {}
    rows = _rows(REWARDS_OF_PAYMENTS, [pg_array(sorted(campaign_ids)), pg_array(payment_ids)])
    return {(campaign_id, payment_id): bill_pk for campaign_id, payment_id, bill_pk in rows}


def budgets_lock(*, pairs: list[tuple[int, str]]) -> dict[tuple[int, str], tuple[int, int]]:
    """Lock the (campaign, customer) budget rows, creating the missing ones, in one statement.

    INSERT ... ON CONFLICT DO UPDATE locks an existing row like SELECT ... FOR UPDATE and returns its
    newest committed points, so two workers settling bills of one customer queue on the row and the
    second reads what the first wrote. Rows go in (campaign, customer) order, so two batches sharing
    customers cannot deadlock. The statement finds rows through the unique index alone: no plan that
    could turn into a scan of the growing table. Returns {(campaign, customer): (pk, points)}.
    """
    pairs = sorted(set(pairs))
    if not pairs:
        return {}
    rows = _rows(BUDGETS_LOCK, [pg_array(c for c, _ in pairs), pg_array(u for _, u in pairs)])
    return {(campaign_id, customer_id): (pk, points) for pk, campaign_id, customer_id, points in rows}


def budgets_update(*, values: list[tuple[int, str, int]]) -> None:
    """Set the points of budget rows this transaction has locked: [(campaign, customer, points)].

    Written as an upsert on the unique key (every row exists, none is inserted) for the same reason
    as `budgets_lock`: the rows are found through the index whatever the table's statistics say.
    """
    if values:
        values = sorted(values)
        _execute(BUDGETS_UPDATE, [pg_array(v[0] for v in values), pg_array(v[1] for v in values),
                                  pg_array(v[2] for v in values)])


def grants_insert(*, grants: list[tuple[int, str, int, str]], now: datetime) -> dict[int, int]:
    """Insert pending grants [(bill pk, customer, points, idempotency key)]; returns {bill pk: grant pk}."""
    if not grants:
        return {}
    bills, customers, points, keys = zip(*grants, strict=True)
    rows = _rows(GRANTS_INSERT, [PointsGrant.Status.PENDING.value, now, now, pg_array(bills), pg_array(customers),
                                 pg_array(points), pg_array(keys)])
    return {bill_pk: pk for pk, bill_pk in rows}


def grant_passes(*, bill_pks: list[int]) -> dict[int, int]:
    """How many grants each bill already has (the pass number goes into the next grant's idempotency key)."""
    if not bill_pks:
        return {}
    return dict(_rows(GRANT_PASSES, [pg_array(bill_pks)]))


def rewards_copy(rows: Iterable[tuple]) -> None:
    """COPY reward rows (tuples in REWARD_COLUMNS order) into the table, inside the current transaction."""
    # the raw psycopg COPY, with its errors turned into Django's (IntegrityError...) as cursor.execute does
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(REWARDS_COPY) as copy:
        for row in rows:
            copy.write_row(row)


def bills_mark_settled(*, bill_pks: list[int], unmatched: dict[int, int], now: datetime) -> None:
    """Status settled and processed_at now for all; unmatched_lines where this pass found unknown merchants."""
    _execute(BILLS_MARK_SETTLED, [Bill.Status.SETTLED.value, now, pg_array(bill_pks),
                                  pg_array(unmatched.get(pk, 0) for pk in bill_pks)])
