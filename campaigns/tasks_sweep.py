"""Periodic sweepers of campaigns kept out of tasks.py; imported by CampaignsConfig.ready()."""

from datetime import timedelta

from mercari_ops.common.periodic import periodic_task


@periodic_task(name="campaigns.backtest_sweep", every=timedelta(minutes=2))
def backtest_sweep() -> dict:
    """Queue again the backtests still queued long after they were created (their task was never sent)."""
    from .services.backtest import campaign_backtests_requeue_stale

    return campaign_backtests_requeue_stale()
