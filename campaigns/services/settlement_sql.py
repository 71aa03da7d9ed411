"""The PostgreSQL statements of a settlement batch: one set-based statement per step, no model instances.

A batch of 500-2,000 bills costs a fixed ~10 statements whatever its size: ids and values travel as one
array literal per column (`pg_array`, parsed by PostgreSQL, not adapted element by element in Python),
rewards go in with COPY. `settlement.py` calls these on PostgreSQL and keeps the ORM path for SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from django.db import connection

from mercari_ops.common.sql import pg_array

from ..models import Bill, BillLine, CampaignBudget, CampaignReward, PointsGrant

BILL = Bill._meta.db_table
LINE = BillLine._meta.db_table
REWARD = CampaignReward._meta.db_table
GRANT = PointsGrant._meta.db_table
BUDGET = CampaignBudget._meta.db_table

REWARD_COLUMNS = ("campaign_id", "campaign_version", "customer_id", "payment_id", "bill_id", "grant_id", "stage",
                  "rate", "amount", "points", "capped", "settled_at", "created_at")


def _rows(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def bills_lock(*, bill_ids: list[int], only_pending: bool, lock: bool) -> dict[int, tuple]:
    """{pk: (bill_id, settled_at, processed_at)}; locked FOR UPDATE SKIP LOCKED unless `lock` is False (dry run)."""
    sql = f"SELECT id, bill_id, settled_at, processed_at FROM {BILL} WHERE id = ANY(%s::bigint[])"
    params: list = [pg_array(bill_ids)]
    if only_pending:
        sql += " AND status = %s"
        params.append(Bill.Status.PENDING)
    if lock:
        sql += " FOR UPDATE SKIP LOCKED"
    return {pk: (bill_id, settled_at, processed_at) for pk, bill_id, settled_at, processed_at in _rows(sql, params)}


def lines_read(*, bill_pks: list[int]) -> list[tuple]:
    """The bills' lines as tuples in `settlement.LINE_FIELDS` order (paid_at an aware UTC datetime).

    paid_at comes as UTC wall time and gets its zone here: Django's loader for timestamptz parses in
    Python and took half the time of reading the lines; psycopg parses a plain timestamp in C.
    """
    rows = _rows(f"SELECT bill_id, payment_id, customer_id, amount, merchant_id, payment_method, channel, "
                 f"paid_at AT TIME ZONE 'UTC' FROM {LINE} WHERE bill_id = ANY(%s::bigint[])", [pg_array(bill_pks)])
    return [(bill, payment, customer, amount, merchant, method, channel, paid_at.replace(tzinfo=UTC))
            for bill, payment, customer, amount, merchant, method, channel, paid_at in rows]


def rewards_existing(*, bill_pks: list[int]) -> set[tuple[int, str]]:
    """(campaign, payment) pairs the bills already have rewards for."""
    return set(_rows(f"SELECT campaign_id, payment_id FROM {REWARD} WHERE bill_id = ANY(%s::bigint[])",
                     [pg_array(bill_pks)]))


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
    rows = _rows(
        f"INSERT INTO {BUDGET} AS b (campaign_id, customer_id, points) "
        f"SELECT c, u, 0 FROM unnest(%s::bigint[], %s::varchar[]) WITH ORDINALITY AS v(c, u, n) ORDER BY n "
        f"ON CONFLICT (campaign_id, customer_id) DO UPDATE SET points = b.points "
        f"RETURNING b.id, b.campaign_id, b.customer_id, b.points",
        [pg_array(c for c, _ in pairs), pg_array(u for _, u in pairs)],
    )
    return {(campaign_id, customer_id): (pk, points) for pk, campaign_id, customer_id, points in rows}


def budgets_update(*, values: list[tuple[int, str, int]]) -> None:
    """Set the points of budget rows this transaction has locked: [(campaign, customer, points)].

    Written as an upsert on the unique key (every row exists, none is inserted) for the same reason
    as `budgets_lock`: the rows are found through the index whatever the table's statistics say.
    """
    if values:
        values = sorted(values)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {BUDGET} AS b (campaign_id, customer_id, points) "
                f"SELECT * FROM unnest(%s::bigint[], %s::varchar[], %s::bigint[]) "
                f"ON CONFLICT (campaign_id, customer_id) DO UPDATE SET points = EXCLUDED.points",
                [pg_array(v[0] for v in values), pg_array(v[1] for v in values), pg_array(v[2] for v in values)],
            )


def grants_insert(*, grants: list[tuple[int, str, int, str]], now: datetime) -> dict[int, int]:
    """Insert pending grants [(bill pk, customer, points, idempotency key)]; returns {bill pk: grant pk}."""
    if not grants:
        return {}
    bills, customers, points, keys = zip(*grants, strict=True)
    rows = _rows(
        f"INSERT INTO {GRANT} (bill_id, customer_id, points, idempotency_key, status, attempts, next_attempt_at, "
        f"last_error, created_at, notified_via) "
        f"SELECT b, u, p, k, %s, 0, %s, '', %s, '' FROM unnest(%s::bigint[], %s::varchar[], %s::int[], "
        f"%s::varchar[]) WITH ORDINALITY AS v(b, u, p, k, n) ORDER BY n RETURNING id, bill_id",
        [PointsGrant.Status.PENDING, now, now, pg_array(bills), pg_array(customers), pg_array(points),
         pg_array(keys)],
    )
    return {bill_pk: pk for pk, bill_pk in rows}


def grant_passes(*, bill_pks: list[int]) -> dict[int, int]:
    """How many grants each bill already has (the pass number goes into the next grant's idempotency key)."""
    if not bill_pks:
        return {}
    return dict(_rows(f"SELECT bill_id, count(*) FROM {GRANT} WHERE bill_id = ANY(%s::bigint[]) GROUP BY bill_id",
                      [pg_array(bill_pks)]))


def rewards_copy(rows: Iterable[tuple]) -> None:
    """COPY reward rows (tuples in REWARD_COLUMNS order) into the table, inside the current transaction."""
    # the raw psycopg COPY, with its errors turned into Django's (IntegrityError...) as cursor.execute does
    with connection.cursor() as cursor, connection.wrap_database_errors, cursor.cursor.copy(
        f"COPY {REWARD} ({', '.join(REWARD_COLUMNS)}) FROM STDIN"
    ) as copy:
        for row in rows:
            copy.write_row(row)


def bills_mark_settled(*, bill_pks: list[int], unmatched: dict[int, int], now: datetime) -> None:
    """Status settled and processed_at now for all; unmatched_lines where this pass found unknown merchants."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {BILL} AS b SET status = %s, processed_at = %s, "
            f"unmatched_lines = CASE WHEN v.n > 0 THEN v.n ELSE b.unmatched_lines END "
            f"FROM unnest(%s::bigint[], %s::int[]) AS v(id, n) WHERE b.id = v.id",
            [Bill.Status.SETTLED, now, pg_array(bill_pks), pg_array(unmatched.get(pk, 0) for pk in bill_pks)],
        )
