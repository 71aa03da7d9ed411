"""Backtest: what a (draft) campaign would have given over the stored bill lines of a past month.

The campaign's own period is replaced by the month, caps start from zero, rewards already
granted by other campaigns do not matter; stages and card statuses are today's (the
project keeps no stage history per day). Nothing but the backtest row is written.

A month can hold a million lines, far more than a web request may take: the admin queues
the run (`campaign_backtest_queue`) and a worker runs it (`campaign_backtest_run`), writing
progress (lines done / total) to the row as it goes. A run whose task message was never sent (the broker
was down after the commit) is queued again by `campaign_backtests_requeue_stale` (`campaigns.backtest_sweep`).

Every line the campaign would not reward is explained (`excluded` on the row): counted once, with its yen,
under the first reason of `rules.EXCLUSION_ORDER` that applies, found by the same rule checks the
settlement runs (`CampaignRule.line_exclusion`), so rewarded + the sum of the reasons = all lines.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.translation import gettext

from mercari_ops.common.business_time import month_bounds
from mercari_ops.common.enqueue import enqueue, enqueue_after_commit
from mercari_ops.common.errors import ValidationFailed

from .. import rules
from ..catalog import campaign_rules_load, merchant_directory_load
from ..models import Bill, Campaign, CampaignBacktest
from ..selectors import customer_facts_many
from . import settlement_sql
from .settlement import Planned, SettlementContext, SettlementReport, lines_plan, month_bill_ids

MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


@transaction.atomic
def campaign_backtest_queue(*, campaign_id: int, month: str, by: str = "") -> CampaignBacktest:
    """Record a queued backtest and hand it to a worker once the row is committed."""
    from ..tasks import campaign_backtest_task

    if not MONTH.fullmatch(month or ""):
        raise ValidationFailed(gettext("month must be YYYY-MM, got %(month)s") % {"month": repr(month)}, "month")
    campaign = Campaign.objects.get(pk=campaign_id)
    run = CampaignBacktest.objects.create(campaign=campaign, month=month, run_by=by)
    enqueue_after_commit(campaign_backtest_task, run.pk)  # broker down: campaign_backtests_requeue_stale
    return run


def campaign_backtests_requeue_stale(*, older_than_seconds: float | None = None, now: datetime | None = None,
                                     limit: int = 100) -> dict[str, int]:
    """The sweeper: queue again the backtests still queued long after they were created.

    Their task message was never sent (the broker was down after the commit) or was lost. A backtest merely
    waiting behind a long run may get a second message: whichever runs second finds it done and returns, or,
    if both start together, computes the same result into the same row.
    """
    from ..tasks import campaign_backtest_task

    now = now or timezone.now()
    if older_than_seconds is None:
        older_than_seconds = settings.CAMPAIGNS_BACKTEST_REQUEUE_AFTER_SECONDS
    stale = list(CampaignBacktest.objects.filter(status=CampaignBacktest.Status.QUEUED,
                                                 created_at__lte=now - timedelta(seconds=older_than_seconds))
                 .order_by("created_at").values_list("pk", flat=True)[:limit])
    requeued = 0
    for backtest_id in stale:
        if not enqueue(campaign_backtest_task, backtest_id):
            break  # the broker is still down: the next sweep tries again
        requeued += 1
    return {"stale": len(stale), "requeued": requeued}


def campaign_backtest_run(*, backtest_id: int, batch: int = 1000) -> CampaignBacktest:
    """The worker's part: simulate, keeping progress on the row; a finished run is left as it is.

    A redelivered run (worker lost mid-way) starts over: it writes nothing but its own row.
    """
    run = CampaignBacktest.objects.get(pk=backtest_id)
    if run.status not in (CampaignBacktest.Status.QUEUED, CampaignBacktest.Status.RUNNING):
        return run
    rows = CampaignBacktest.objects.filter(pk=backtest_id)
    total = Bill.objects.filter(billing_month=run.month).aggregate(lines=Sum("line_count"))["lines"] or 0
    rows.update(status=CampaignBacktest.Status.RUNNING, started_at=timezone.now(), lines_total=total, lines_done=0,
                error="")
    try:
        result, excluded = campaign_backtest_simulate(campaign_id=run.campaign_id, month=run.month, batch=batch,
                                                      progress=lambda done: rows.update(lines_done=done))
    except Exception as exc:
        rows.update(status=CampaignBacktest.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                    finished_at=timezone.now())
        raise
    rows.update(status=CampaignBacktest.Status.DONE, result=result, excluded=excluded, lines_done=result["lines"],
                lines_total=max(total, result["lines"]), finished_at=timezone.now())
    return CampaignBacktest.objects.get(pk=backtest_id)


def campaign_backtest_compute(*, campaign_id: int, month: str, batch: int = 1000,
                              progress: Callable[[int], object] | None = None) -> dict:
    """The simulation's result alone (see `campaign_backtest_simulate`)."""
    return campaign_backtest_simulate(campaign_id=campaign_id, month=month, batch=batch, progress=progress)[0]


def campaign_backtest_simulate(*, campaign_id: int, month: str, batch: int = 1000,
                               progress: Callable[[int], object] | None = None) -> tuple[dict, dict]:
    """The simulation itself (no writes): (result, excluded).

    result: recipients, points, cap hits, split by stage; excluded: lines and yen by reason (`ExclusionTally`).
    `progress(lines_done)` is called after each batch of bills.
    """
    campaign = Campaign.objects.get(pk=campaign_id)
    start, end = month_bounds(month)
    rule = dataclasses.replace(campaign_rules_load([campaign])[0], starts_at=start, ends_at=end)
    ctx = SettlementContext([rule], merchant_directory_load(), {campaign.pk: campaign.name})
    report = SettlementReport()
    used: dict = {}
    by_stage: dict[int, dict] = defaultdict(lambda: {"recipients": set(), "rewards": 0, "points": 0, "cap_hits": 0})
    capped_customers: set[str] = set()
    tally = ExclusionTally()
    for ids in month_bill_ids(month=month, batch=batch):
        lines = settlement_sql.lines_read(bill_pks=ids)
        stages, statuses = customer_facts_many(customer_ids=sorted({line[2] for line in lines}))
        planned = lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used, existing=set(),
                             report=report)
        tally.add(lines=lines, planned=planned, rule=rule, merchants=ctx.merchants, stages=stages,
                  statuses=statuses)
        for item in planned:
            bucket = by_stage[item.stage]
            bucket["recipients"].add(item.customer_id)
            bucket["rewards"] += 1
            bucket["points"] += item.points
            if item.capped:
                bucket["cap_hits"] += 1
                capped_customers.add(item.customer_id)
        if progress is not None:
            progress(report.lines)
    totals = report.campaigns.get(campaign.pk)
    result = {
        "month": month,
        "lines": report.lines,
        "lines_rewarded": report.lines_rewarded,
        "lines_unknown_merchant": report.lines_unknown_merchant,
        "lines_unknown_customer": report.lines_unknown_customer,
        "recipients": len(totals.customers) if totals else 0,
        "points": totals.points if totals else 0,
        "rewards": totals.rewards if totals else 0,
        "cap_hits": totals.capped if totals else 0,
        "customers_at_cap": len(capped_customers),
        "by_stage": [
            {"stage": stage, "recipients": len(b["recipients"]), "rewards": b["rewards"], "points": b["points"],
             "cap_hits": b["cap_hits"]}
            for stage, b in sorted(by_stage.items())
        ],
    }
    return result, tally.as_dict()


class ExclusionTally:
    """Lines and yen per reason a line earns nothing; each line counted once (see the module's note)."""

    UNEXPLAINED = "unexplained"  # would mean the rules and the settlement disagree: tests keep it at zero

    def __init__(self) -> None:
        self.lines = self.yen = 0
        self.rewarded = [0, 0]
        self.by_reason: dict[str, list[int]] = {reason: [0, 0] for reason in rules.EXCLUSION_ORDER}

    def add(self, *, lines: list[tuple], planned: list[Planned], rule: rules.CampaignRule,
            merchants: rules.MerchantDirectory, stages: dict[str, int], statuses: dict[str, int]) -> None:
        """One batch of lines (LINE_FIELDS tuples) and what `lines_plan` planned for them."""
        rewarded = {(item.bill_pk, item.payment_id) for item in planned}
        first_bill: dict[str, int] = {}
        for line in lines:  # as lines_plan: a payment on several bills of the batch belongs to the lowest
            first_bill[line[1]] = min(first_bill.get(line[1], line[0]), line[0])
        for bill_pk, payment_id, customer_id, amount, merchant_id, method, channel, paid_at in lines:
            self.lines += 1
            self.yen += amount
            if (bill_pk, payment_id) in rewarded:
                bucket = self.rewarded
            else:
                reason = rules.DUPLICATE_PAYMENT if first_bill[payment_id] != bill_pk else rule.line_exclusion(
                    merchant=merchants.lookup(merchant_id, method), stage=stages.get(customer_id),
                    card_status=statuses.get(customer_id), amount=amount, channel=channel, payment_method=method,
                    paid_at=paid_at)
                bucket = self.by_reason.setdefault(reason or self.UNEXPLAINED, [0, 0])
            bucket[0] += 1
            bucket[1] += amount

    def as_dict(self) -> dict:
        return {
            "lines": self.lines, "yen": self.yen,
            "rewarded": {"lines": self.rewarded[0], "yen": self.rewarded[1]},
            "reasons": [{"reason": reason, "lines": lines, "yen": yen}
                        for reason, (lines, yen) in self.by_reason.items()
                        if reason != self.UNEXPLAINED or lines],
        }
