"""Merchant master imports too big for a request (thin tasks; imported by CampaignsConfig.ready, since
Celery's autodiscovery only looks for `tasks.py`)."""

from datetime import timedelta

from celery import shared_task

from mercari_ops.common.periodic import periodic_task


@shared_task(name="campaigns.merchant_import_run", acks_late=True)
def merchant_import_task(job_id: int) -> dict:
    """Apply a checked merchant master CSV (queued by the admin; `default` queue)."""
    from .services.merchants import merchant_import_job_run

    job = merchant_import_job_run(job_id=job_id)
    return {"job": job.pk, "status": job.status, "rows": job.rows_done}


@periodic_task(name="campaigns.merchant_import_sweep", every=timedelta(seconds=60))
def merchant_import_sweep() -> dict:
    """Send again the import jobs whose task was never queued (broker down) or whose worker vanished."""
    from .services.merchants import merchant_import_jobs_requeue_stale

    return {"sent": merchant_import_jobs_requeue_stale()}
