"""Thin Celery tasks (names campaigns.settle* run on the `settlement` queue)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings

from mercari_ops.common.periodic import periodic_task


@shared_task(name="campaigns.settle_bills", acks_late=True)
def settle_bills_task(bill_ids: list[int]) -> dict:
    from .services import bills_settle

    report, _ = bills_settle(bill_ids=bill_ids, only_pending=True)
    return report.as_dict()


@shared_task(name="campaigns.settle_grants_deliver", acks_late=True)
def settle_grants_deliver_task(grant_ids: list[int]) -> dict:
    from .services import grants_deliver

    return grants_deliver(grant_ids=grant_ids)


@shared_task(name="campaigns.backtest_run", acks_late=True)
def campaign_backtest_task(backtest_id: int) -> dict:
    """Simulate a campaign over a past month (queued by the admin; `default` queue)."""
    from .services import campaign_backtest_run

    run = campaign_backtest_run(backtest_id=backtest_id)
    return {"backtest": run.pk, "status": run.status, "lines": run.lines_done}


@periodic_task(name="campaigns.settle_sweep", every=timedelta(seconds=60), queue="settlement")
def settle_sweep() -> dict:
    """Settle bills whose after-commit task was lost, and retry due points grants."""
    from .services import grants_deliver_all, pending_bills_settle

    report = pending_bills_settle(older_than_seconds=settings.CAMPAIGNS_SWEEP_AFTER_SECONDS)
    return {"settled": report.as_dict(), "grants": grants_deliver_all()}


@periodic_task(name="campaigns.provisions_daily", crontab={"minute": 30, "hour": 0})
def provisions_daily() -> dict:
    """Daily provisions and the journal of this month and the previous one (late grants)."""
    from django.utils import timezone

    from mercari_ops.common.business_time import business_month_label

    from .services import provision_journal_compute, provisions_daily_compute
    from .services.provisions import month_previous

    month = business_month_label(timezone.now())
    daily = provisions_daily_compute()
    for m in (month_previous(month), month):
        provision_journal_compute(month=m)
    return {"campaigns": len(daily)}
