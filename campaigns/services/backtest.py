"""Backtest: what a (draft) campaign would have given over the stored bill lines of a past month.

The campaign's own period is replaced by the month, caps start from zero, rewards already
granted by other campaigns do not matter; stages and card statuses are today's (the
project keeps no stage history per day). Nothing but the result row is written.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from django.db import transaction

from ..catalog import campaign_rules_load, merchant_directory_load
from ..models import BillLine, Campaign, CampaignBacktest
from ..selectors import customer_facts_many
from .provisions import month_bounds
from .settlement import SettlementContext, SettlementReport, lines_plan, month_bill_ids


def campaign_backtest_run(*, campaign_id: int, month: str, by: str = "", batch: int = 1000) -> CampaignBacktest:
    campaign = Campaign.objects.get(pk=campaign_id)
    start, end = month_bounds(month)
    rule = dataclasses.replace(campaign_rules_load([campaign])[0], starts_at=start, ends_at=end)
    ctx = SettlementContext([rule], merchant_directory_load(), {campaign.pk: campaign.name})
    report = SettlementReport()
    used: dict = {}
    by_stage: dict[int, dict] = defaultdict(lambda: {"recipients": set(), "rewards": 0, "points": 0, "cap_hits": 0})
    capped_customers: set[str] = set()
    for ids in month_bill_ids(month=month, batch=batch):
        lines = list(BillLine.objects.filter(bill_id__in=ids).values_list(
            "bill_id", "payment_id", "customer_id", "amount", "merchant_id", "payment_method", "channel", "paid_at"))
        stages, statuses = customer_facts_many(customer_ids=sorted({line[2] for line in lines}))
        for item in lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used, existing=set(),
                               report=report):
            bucket = by_stage[item.stage]
            bucket["recipients"].add(item.customer_id)
            bucket["rewards"] += 1
            bucket["points"] += item.points
            if item.capped:
                bucket["cap_hits"] += 1
                capped_customers.add(item.customer_id)
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
    with transaction.atomic():
        return CampaignBacktest.objects.create(campaign=campaign, month=month, result=result, run_by=by)
