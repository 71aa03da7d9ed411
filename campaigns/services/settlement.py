"""Monthly settlement: bill lines -> capped rewards -> one points grant per bill and pass.

Set-based per batch of bills, in one transaction, a fixed ~10 statements whatever the batch size
(`settlement_sql`: arrays as one literal per column, rewards by COPY):
  1. lock the bills (FOR UPDATE SKIP LOCKED: a bill another worker is settling is skipped, it settles there);
  2. read their lines, the customers' stages and card statuses, and, for bills settled before only, the
     rewards they already have;
  3. plan in memory with the pure rules (`CampaignRule.evaluate` + `points_calculate`), lines in
     (customer, paid_at, payment_id) order so the cap is consumed by the earliest payments;
  4. the cap: lock the (campaign, customer) budget rows in (campaign, customer) order, creating the missing
     ones, so two bills of one customer settling at the same moment on two workers serialise on the budget
     row and the second sees what the first granted;
  5. insert grants and rewards (unique per campaign + payment), update budgets and bills in bulk.

Idempotent: a payment that already has a reward for a campaign is skipped, so re-running a bill or a
month adds nothing; a pass that adds nothing creates no grant. Delivery of the grants happens after commit.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from .. import rules
from ..catalog import campaign_rules_load, merchant_directory_load
from ..models import Bill, Campaign, CampaignBudget
from ..rules import CampaignRule, MerchantDirectory, points_calculate
from ..selectors import customer_facts_many
from . import settlement_sql as sql


@dataclass
class SettlementContext:
    rules: list[CampaignRule]
    merchants: MerchantDirectory
    names: dict[int, str]

    @classmethod
    def load(cls, campaigns=None) -> SettlementContext:
        campaigns = list(campaigns if campaigns is not None else Campaign.objects.settleable())
        return cls(campaign_rules_load(campaigns), merchant_directory_load(), {c.pk: c.name for c in campaigns})


@dataclass
class CampaignTotals:
    name: str
    rewards: int = 0
    points: int = 0
    capped: int = 0
    customers: set = field(default_factory=set)

    def as_dict(self) -> dict:
        return {"name": self.name, "rewards": self.rewards, "points": self.points, "capped": self.capped,
                "customers": len(self.customers)}


@dataclass
class SettlementReport:
    bills: int = 0
    bills_skipped_locked: int = 0
    lines: int = 0
    lines_rewarded: int = 0
    lines_unknown_merchant: int = 0
    lines_unknown_customer: int = 0
    lines_no_campaign: int = 0
    grants: int = 0
    campaigns: dict[int, CampaignTotals] = field(default_factory=dict)

    def totals(self, campaign_id: int, name: str) -> CampaignTotals:
        if campaign_id not in self.campaigns:
            self.campaigns[campaign_id] = CampaignTotals(name)
        return self.campaigns[campaign_id]

    def merge(self, other: SettlementReport) -> None:
        for name in ("bills", "bills_skipped_locked", "lines", "lines_rewarded", "lines_unknown_merchant",
                     "lines_unknown_customer", "lines_no_campaign", "grants"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for campaign_id, theirs in other.campaigns.items():
            mine = self.totals(campaign_id, theirs.name)
            mine.rewards += theirs.rewards
            mine.points += theirs.points
            mine.capped += theirs.capped
            mine.customers |= theirs.customers

    def as_dict(self) -> dict:
        return {
            "bills": self.bills, "bills_skipped_locked": self.bills_skipped_locked, "lines": self.lines,
            "lines_rewarded": self.lines_rewarded, "lines_unknown_merchant": self.lines_unknown_merchant,
            "lines_unknown_customer": self.lines_unknown_customer, "lines_no_campaign": self.lines_no_campaign,
            "grants": self.grants,
            "campaigns": {cid: t.as_dict() for cid, t in sorted(self.campaigns.items())},
        }


@dataclass(slots=True)
class Planned:
    campaign_id: int
    version: int
    customer_id: str
    payment_id: str
    bill_pk: int
    stage: int
    rate: str
    amount: int
    points: int
    capped: bool


LINE_FIELDS = sql.LINE_FIELDS


def lines_plan(*, lines: list[tuple], ctx: SettlementContext, stages: dict[str, int], statuses: dict[str, int],
               used: dict[tuple[int, str], int], existing: set[tuple[int, str]], report: SettlementReport,
               unmatched_by_bill: dict[int, int] | None = None) -> list[Planned]:
    """Pure planning of rewards for lines (tuples in LINE_FIELDS order); `used` is updated in place.

    `used[(campaign_id, customer_id)]` is what the customer already got from the campaign (capped
    campaigns only); lines are processed in (customer, paid_at, payment_id) order.
    """
    planned: list[Planned] = []
    lines = sorted(lines, key=lambda line: (line[2], line[7], line[1]))
    for bill_pk, payment_id, customer_id, amount, merchant_id, method, channel, paid_at in lines:
        report.lines += 1
        merchant = ctx.merchants.lookup(merchant_id, method)
        if merchant is None:
            report.lines_unknown_merchant += 1
            if unmatched_by_bill is not None:
                unmatched_by_bill[bill_pk] = unmatched_by_bill.get(bill_pk, 0) + 1
            continue
        stage = stages.get(customer_id)
        if stage is None:
            report.lines_unknown_customer += 1
            continue
        card_status = statuses.get(customer_id)
        rewarded = False
        for rule in ctx.rules:
            outcome = rule.evaluate(stage=stage, card_status=card_status, amount=amount, channel=channel,
                                    merchant=merchant, payment_method=method, paid_at=paid_at)
            if isinstance(outcome, str) or outcome.points <= 0 or (rule.id, payment_id) in existing:
                continue
            points, capped = outcome.points, False
            if rule.upper_limit is not None:
                key = (rule.id, customer_id)
                already = used.get(key, 0)
                points = points_calculate(amount=amount, rate_tenths=outcome.rate_tenths,
                                          cap_left=rule.upper_limit - already)
                capped = points < outcome.points
                used[key] = already + points
            planned.append(Planned(rule.id, rule.version, customer_id, payment_id, bill_pk, stage, outcome.rate,
                                   amount, points, capped))
            totals = report.totals(rule.id, ctx.names.get(rule.id, str(rule.id)))
            totals.rewards += 1
            totals.points += points
            totals.capped += capped
            totals.customers.add(customer_id)
            rewarded = True
        if rewarded:
            report.lines_rewarded += 1
        else:
            report.lines_no_campaign += 1
    return planned


def bills_settle(*, bill_ids: list[int], ctx: SettlementContext | None = None, dry_run: bool = False,
                 dry_used: dict | None = None, only_pending: bool = False) -> tuple[SettlementReport, list[int]]:
    """Settle a batch of bills (primary keys). Returns the report and the ids of the grants created.

    dry_run: plan only, write nothing (budgets read without locks; `dry_used` carries what earlier
    batches of the same dry run would have used, so the cap holds across batches).
    """
    ctx = ctx or SettlementContext.load()
    report = SettlementReport()
    with transaction.atomic():
        bill_rows = sql.bills_lock(bill_ids=bill_ids, only_pending=only_pending, lock=not dry_run)
        report.bills = len(bill_rows)
        report.bills_skipped_locked = 0 if only_pending else len(set(bill_ids) - set(bill_rows))
        if not bill_rows:
            return report, []
        bill_pks = sorted(bill_rows)
        lines = sql.lines_read(bill_pks=bill_pks)
        customers = sorted({line[2] for line in lines})
        stages, statuses = customer_facts_many(customer_ids=customers)
        # Rewards and grants are written only in the transaction that sets processed_at: a bill never
        # processed has none, so the lookup (into the month's fastest-growing table) is for re-runs only.
        rerun = [pk for pk in bill_pks if bill_rows[pk][2] is not None]
        existing = sql.rewards_existing(bill_pks=rerun) if rerun else set()
        capped_ids = {rule.id for rule in ctx.rules if rule.upper_limit is not None}
        pairs = [(cid, customer) for cid in capped_ids for customer in customers]
        if dry_run:
            used = {(c, u): p for c, u, p in CampaignBudget.objects.filter(
                campaign_id__in=capped_ids, customer_id__in=customers).values_list("campaign_id", "customer_id",
                                                                                  "points")}
            if dry_used is not None:
                used.update({key: dry_used[key] for key in pairs if key in dry_used})
            lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used, existing=existing,
                       report=report)
            if dry_used is not None:
                dry_used.update(used)
            transaction.set_rollback(True)
            return report, []
        budgets = sql.budgets_lock(pairs=pairs)
        used = {key: points for key, (_, points) in budgets.items()}
        unmatched: dict[int, int] = {}
        planned = lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used,
                             existing=existing, report=report, unmatched_by_bill=unmatched)
        grant_ids = _write(planned, bill_rows, budgets, used, report)
        now = timezone.now()
        sql.bills_mark_settled(bill_pks=bill_pks, unmatched=unmatched, now=now)
        if grant_ids:
            from ..tasks import settle_grants_deliver_task

            transaction.on_commit(lambda: settle_grants_deliver_task.delay(grant_ids))
    return report, grant_ids


def _write(planned: list[Planned], bill_rows: dict[int, tuple], budgets: dict, used: dict,
           report: SettlementReport) -> list[int]:
    """One grant per bill that gains points (pass number in its idempotency key), the rewards, the budgets."""
    now = timezone.now()
    points_by_bill: dict[int, int] = defaultdict(int)
    customer_by_bill: dict[int, str] = {}
    for item in planned:
        points_by_bill[item.bill_pk] += item.points
        customer_by_bill[item.bill_pk] = item.customer_id
    granting = [pk for pk, points in points_by_bill.items() if points > 0]
    changed = [(key, points) for key, points in used.items() if key in budgets and points != budgets[key][1]]
    rerun = [pk for pk in granting if bill_rows[pk][2] is not None]
    passes = sql.grant_passes(bill_pks=rerun)
    grant_by_bill = sql.grants_insert(grants=[
        (pk, customer_by_bill[pk], points_by_bill[pk], f"mops-bill-{bill_rows[pk][0]}-{passes.get(pk, 0) + 1}")
        for pk in granting
    ], now=now)
    sql.rewards_copy(
        (p.campaign_id, p.version, p.customer_id, p.payment_id, p.bill_pk,
         grant_by_bill.get(p.bill_pk) if p.points > 0 else None, p.stage, p.rate, p.amount, p.points, p.capped,
         bill_rows[p.bill_pk][1], now)
        for p in planned
    )
    sql.budgets_update(values=[(campaign_id, customer_id, points) for (campaign_id, customer_id), points in changed])
    report.grants = len(grant_by_bill)
    return sorted(grant_by_bill.values())


def month_bill_ids(*, month: str, only_pending: bool = False, batch: int = 1000):
    """Primary keys of the month's bills, in batches (keyset on the (billing_month, id) index)."""
    last = 0
    while True:
        query = Bill.objects.filter(billing_month=month, pk__gt=last)
        if only_pending:
            query = query.filter(status=Bill.Status.PENDING)
        ids = list(query.order_by("pk").values_list("pk", flat=True)[:batch])
        if not ids:
            return
        yield ids
        last = ids[-1]


def month_settle(*, month: str, dry_run: bool = False, batch: int = 500, progress=None,
                 only_pending: bool = False) -> SettlementReport:
    """Re-run a month from stored bills (what `manage.py settle` calls)."""
    ctx = SettlementContext.load()
    total = SettlementReport()
    dry_used: dict = {}
    for ids in month_bill_ids(month=month, only_pending=only_pending, batch=batch):
        report, _ = bills_settle(bill_ids=ids, ctx=ctx, dry_run=dry_run, dry_used=dry_used,
                                 only_pending=only_pending)
        total.merge(report)
        if progress is not None:
            progress(report)
    return total


def pending_bills_settle(*, older_than_seconds: int = 0, limit: int = 5000, batch: int = 500) -> SettlementReport:
    """The sweeper: settle bills still pending (their on_commit task was lost or failed)."""
    cutoff = timezone.now() - timezone.timedelta(seconds=older_than_seconds)
    ids = list(Bill.objects.filter(status=Bill.Status.PENDING, received_at__lte=cutoff)
               .order_by("received_at").values_list("pk", flat=True)[:limit])
    total = SettlementReport()
    if not ids:
        return total
    ctx = SettlementContext.load()
    for start in range(0, len(ids), batch):
        report, _ = bills_settle(bill_ids=ids[start:start + batch], ctx=ctx, only_pending=True)
        total.merge(report)
    return total


__all__ = ["SettlementContext", "SettlementReport", "bills_settle", "lines_plan", "month_settle",
           "pending_bills_settle", "rules"]
