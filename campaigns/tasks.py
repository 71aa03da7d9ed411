"""Thin Celery tasks (names campaigns.settle* run on the `settlement` queue)."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings

from mercari_ops.common.periodic import periodic_task

logger = logging.getLogger(__name__)


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
    """Settle bills whose after-commit task was lost, and retry due points grants.

    A bill that cannot settle is set aside (dead) by the settlement itself; anything else that fails the
    bill step (the database...) is raised only after the grant step ran, so due grants never wait behind it.
    """
    from .services import grants_deliver_all, pending_bills_settle

    failure = None
    try:
        settled = pending_bills_settle(older_than_seconds=settings.CAMPAIGNS_SWEEP_AFTER_SECONDS).as_dict()
    except Exception as exc:  # re-raised below, once the grants had their turn
        logger.exception("settle_sweep: settling pending bills failed; delivering due grants anyway")
        failure, settled = exc, {"error": f"{type(exc).__name__}: {exc}"}
    grants = grants_deliver_all()
    if failure is not None:
        raise failure
    return {"settled": settled, "grants": grants}


@periodic_task(name="campaigns.settle_grants_sweep", every=timedelta(seconds=10), queue="settlement")
def settle_grants_sweep() -> dict:
    """Deliver due points grants: retries after their backoff, and what waited while the points service
    was down (its breaker lets one probe through at most every CAMPAIGNS_POINTS_BREAKER_RETRY_MAX_SECONDS)."""
    from .services import grants_deliver_all

    return grants_deliver_all()


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
