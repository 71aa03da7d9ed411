"""Counting cheaply at scrape time."""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Model, QuerySet


def rows_estimate(model: type[Model]) -> float | None:
    """The planner's row count of the model's table (pg_class.reltuples, kept by autovacuum's ANALYZE); None
    while the table was never analysed. Exact counts of a million-row status cost tens of milliseconds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table])
        row = cursor.fetchone()
    return float(row[0]) if row and row[0] >= 0 else None


def counts_by(queryset: QuerySet, field: str, values: list[str]) -> dict[tuple[str], float]:
    """{(value,): rows} for each of `values` (0 when none): one GROUP BY on an index led by `field`."""
    counts = {(value,): 0.0 for value in values}
    for value, n in queryset.filter(**{f"{field}__in": values}).order_by().values_list(field).annotate(n=Count("*")):
        counts[(value,)] = float(n)
    return counts


# Below this many rows (as the planner estimates) an exact count costs a millisecond or two: done exactly.
EXACT_BELOW_ROWS = 10_000


def mostly_done_counts(model: type[Model], field: str, small: list[str], done: str) -> dict[tuple[str], float]:
    """Exact counts of the `small` states; the `done` state (nearly every row) exactly while the table is small
    (or never analysed), else as the planner's row estimate minus the small states."""
    counts = counts_by(model.objects.all(), field, small)
    estimate = rows_estimate(model)
    if estimate is None or estimate < EXACT_BELOW_ROWS:
        counts[(done,)] = float(model.objects.filter(**{field: done}).count())
    else:
        counts[(done,)] = max(0.0, estimate - sum(counts.values()))
    return counts
