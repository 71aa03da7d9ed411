"""Thin Celery tasks: IDs in, one service call."""

from datetime import timedelta

from celery import shared_task

from mercari_ops.common.periodic import periodic_task

from . import services


@shared_task(name="loyalty.recompute", acks_late=True)
def recompute(job_id: int) -> str:
    """Recompute every customer's stage for a new rules version (resumable from the job's cursor)."""
    return services.recompute_job_run(job_id=job_id)


@periodic_task(name="loyalty.nightly_downgrades", crontab={"minute": 5, "hour": 0}, queue="events")
def nightly_downgrades():
    """Downgrade customers whose window (old months leaving it) no longer meets their stage."""
    return services.stages_downgrade_nightly()


@periodic_task(name="loyalty.pins_expire", every=timedelta(minutes=1), queue="events")
def pins_expire():
    """Drop expired operator pins; the stage falls back to the rules stage (recorded)."""
    return {"expired": services.pins_expire()}


@periodic_task(name="loyalty.recompute_resume", every=timedelta(minutes=2), queue="events")
def recompute_resume():
    """Resume a rules recomputation whose task was lost or failed (from its stored cursor)."""
    return services.recompute_job_resume_stale()
