"""Counting cheaply at scrape time."""

from __future__ import annotations

from django.db import connection
from django.db.models import Count, Min, Model, QuerySet


def counts_by(queryset: QuerySet, field: str, values: list[str], *, oldest: str | None = None
              ) -> tuple[dict[tuple[str], float], dict[str, object]]:
    """({(value,): rows} for each of `values`, 0 when none; {value: min(`oldest`)}): one GROUP BY on an
    index led by `field` (index-only when `oldest` is the index's next column)."""
    counts = {(value,): 0.0 for value in values}
    minimum: dict[str, object] = {}
    rows = queryset.filter(**{f"{field}__in": values}).order_by().values_list(field)
    rows = rows.annotate(n=Count("*"), oldest=Min(oldest)) if oldest else rows.annotate(n=Count("*"))
    for value, n, *first in rows:
        counts[(value,)] = float(n)
        if first:
            minimum[value] = first[0]
    return counts, minimum


def rows_estimates(models: list[type[Model]]) -> dict[type[Model], float | None]:
    """The planner's row count of each model's table (pg_class.reltuples, kept by autovacuum's ANALYZE), None
    for a table never analysed; one round trip. Exact counts of a million-row state cost tens of milliseconds."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, reltuples FROM pg_class WHERE oid = ANY(%s::regclass[])",
                       [[model._meta.db_table for model in models]])
        found = dict(cursor.fetchall())
    return {model: (float(found[model._meta.db_table]) if found.get(model._meta.db_table, -1) >= 0 else None)
            for model in models}


# Below this many rows (as the planner estimates) an exact count costs a millisecond or two: done exactly.
EXACT_BELOW_ROWS = 10_000


def done_count(model: type[Model], field: str, done: str, others: float, estimate: float | None) -> float:
    """Rows in the `done` state (nearly every row): exact while the table is small (or never analysed), else
    the planner's row estimate minus the `others` (the other states, counted exactly)."""
    if estimate is None or estimate < EXACT_BELOW_ROWS:
        return float(model.objects.filter(**{field: done}).count())
    return max(0.0, estimate - others)
