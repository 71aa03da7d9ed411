"""Loyalty's metrics (docs/operations.md "Metrics"): events and stage moves counted once committed,
recomputation progress at scrape time."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count

from mercari_ops.common.metrics import ScrapeGauge, counter, scrape_area_register

EVENTS_APPLIED = counter("mercari_ops_loyalty_events_applied_total", "Loyalty activity events applied to totals")
STAGE_CHANGES = counter("mercari_ops_loyalty_stage_changes_total", "Stage changes by direction", ["direction"],
                        initial=lambda: [("up",), ("down",)])


def events_applied_counted(count: int) -> None:
    """Counted when the caller's transaction commits: a group that rolls back and is applied again one by
    one must not count twice."""
    transaction.on_commit(lambda: EVENTS_APPLIED.inc(count))


def stage_changes_counted(moves: list[tuple[int, int]]) -> None:
    """(from stage, to stage) of each change, counted up or down once committed."""
    up = sum(1 for before, after in moves if after > before)
    down = sum(1 for before, after in moves if after < before)
    if up or down:
        def count() -> None:
            STAGE_CHANGES.labels("up").inc(up)
            STAGE_CHANGES.labels("down").inc(down)

        transaction.on_commit(count)


GAUGES = (
    ScrapeGauge("mercari_ops_loyalty_recompute_jobs", "Unfinished rules recomputations by state", ("status",)),
    ScrapeGauge("mercari_ops_loyalty_recompute_progress_ratio",
                "done/total of the newest unfinished recomputation (1: none unfinished)"),
)


def read() -> dict:
    """Index loyalty_recompute_status; jobs are one per rules change."""
    from .models import RecomputeJob

    unfinished = [RecomputeJob.Status.QUEUED, RecomputeJob.Status.RUNNING, RecomputeJob.Status.FAILED]
    jobs = {(status,): 0.0 for status in unfinished}
    for status, n in (RecomputeJob.objects.filter(status__in=unfinished).order_by().values_list("status")
                      .annotate(n=Count("*"))):
        jobs[(status,)] = float(n)
    newest = (RecomputeJob.objects.filter(status__in=unfinished).order_by("-created_at")
              .values_list("done", "total").first())
    progress = 1.0 if newest is None else (min(1.0, newest[0] / newest[1]) if newest[1] else 0.0)
    return {"mercari_ops_loyalty_recompute_jobs": jobs, "mercari_ops_loyalty_recompute_progress_ratio": progress}


def register() -> None:
    scrape_area_register("loyalty", GAUGES, read)
