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

One payment, one reward per campaign: when a `payment_id` appears on several bills, the bill that settled
first keeps the reward, and among bills settling together the one received first (lowest id); the other
bills settle without a reward for that line (`lines_duplicate_payment`).

One bill never stops the others (issue 16). The fast path above checks a payment against rewards of
other bills only through the unique constraint, so a batch with such a payment, or with any bill whose data
the database refuses (a value out of range...), fails as a whole: it is then run again with the lookup of
the payments' rewards, and if it still fails, bill by bill, each in its own savepoint. A bill that fails
alone is set aside as `dead` with the database's reason (admin: Bills, status "Set aside"; "Retry
settlement" after a fix), counted in the report, and every other bill of the batch settles.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field

from django.db import DataError, IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .. import rules
from ..catalog import campaign_rules_load, merchant_directory_load
from ..models import Bill, Campaign, CampaignBudget
from ..rules import CampaignRule, MerchantDirectory, points_calculate
from ..selectors import customer_facts_many
from . import settlement_sql as sql

logger = logging.getLogger(__name__)

# What a bill's own data can make the database refuse; any other error (database unreachable...) is no
# bill's fault and propagates.
BILL_DATA_ERRORS = (DataError, IntegrityError)


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
    lines_duplicate_payment: int = 0
    grants: int = 0
    bills_dead: int = 0
    dead: list[tuple[str, str]] = field(default_factory=list)  # (bill_id, reason) of the bills set aside
    campaigns: dict[int, CampaignTotals] = field(default_factory=dict)

    def totals(self, campaign_id: int, name: str) -> CampaignTotals:
        if campaign_id not in self.campaigns:
            self.campaigns[campaign_id] = CampaignTotals(name)
        return self.campaigns[campaign_id]

    def merge(self, other: SettlementReport) -> None:
        for name in ("bills", "bills_skipped_locked", "lines", "lines_rewarded", "lines_unknown_merchant",
                     "lines_unknown_customer", "lines_no_campaign", "lines_duplicate_payment", "grants",
                     "bills_dead"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.dead.extend(other.dead)
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
            "lines_duplicate_payment": self.lines_duplicate_payment, "grants": self.grants,
            "bills_dead": self.bills_dead, "dead": [{"bill_id": b, "reason": r} for b, r in self.dead],
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
               unmatched_by_bill: dict[int, int] | None = None,
               taken: dict[tuple[int, str], int] | None = None) -> list[Planned]:
    """Pure planning of rewards for lines (tuples in LINE_FIELDS order); `used` is updated in place.

    `used[(campaign_id, customer_id)]` is what the customer already got from the campaign (capped
    campaigns only); lines are processed in (customer, paid_at, payment_id) order. `existing`: (campaign,
    payment) pairs already rewarded on these bills; `taken`: {(campaign, payment): bill pk} of rewards
    already written for these payments on any bill. A payment on several of these bills is planned on
    the lowest bill pk only.
    """
    planned: list[Planned] = []
    first_bill: dict[str, int] = {}
    for line in lines:
        if first_bill.setdefault(line[1], line[0]) > line[0]:
            first_bill[line[1]] = line[0]
    lines = sorted(lines, key=lambda line: (line[2], line[7], line[1], line[0]))
    for bill_pk, payment_id, customer_id, amount, merchant_id, method, channel, paid_at in lines:
        report.lines += 1
        if first_bill[payment_id] != bill_pk:
            report.lines_duplicate_payment += 1
            continue
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
        rewarded = duplicate = False
        for rule in ctx.rules:
            outcome = rule.evaluate(stage=stage, card_status=card_status, amount=amount, channel=channel,
                                    merchant=merchant, payment_method=method, paid_at=paid_at)
            if isinstance(outcome, str) or outcome.points <= 0 or (rule.id, payment_id) in existing:
                continue
            owner = taken.get((rule.id, payment_id)) if taken else None
            if owner is not None:
                duplicate = duplicate or owner != bill_pk
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
        elif duplicate:
            report.lines_duplicate_payment += 1
        else:
            report.lines_no_campaign += 1
    return planned


def bills_settle(*, bill_ids: list[int], ctx: SettlementContext | None = None, dry_run: bool = False,
                 dry_used: dict | None = None, only_pending: bool = False) -> tuple[SettlementReport, list[int]]:
    """Settle a batch of bills (primary keys). Returns the report and the ids of the grants created.

    dry_run: plan only, write nothing (budgets read without locks; `dry_used` carries what earlier
    batches of the same dry run would have used, so the cap holds across batches).

    A bill whose data the database refuses is set aside as dead (see the module's note); the others settle.
    """
    ctx = ctx or SettlementContext.load()
    if dry_run:
        return _batch_settle(bill_ids=bill_ids, ctx=ctx, dry_run=True, dry_used=dry_used, only_pending=only_pending)
    try:
        return _batch_settle(bill_ids=bill_ids, ctx=ctx, only_pending=only_pending)
    except BILL_DATA_ERRORS as exc:
        logger.warning("settlement batch of %d bill(s) failed (%s); retrying with the payments' rewards looked up",
                       len(bill_ids), _reason(exc))
    try:
        return _batch_settle(bill_ids=bill_ids, ctx=ctx, only_pending=only_pending, check_payments=True)
    except BILL_DATA_ERRORS as exc:
        logger.warning("settlement batch of %d bill(s) failed again (%s); settling bill by bill",
                       len(bill_ids), _reason(exc))
    report, grant_ids = SettlementReport(), []
    for pk in sorted(set(bill_ids)):
        try:
            one, ids = _batch_settle(bill_ids=[pk], ctx=ctx, only_pending=only_pending, check_payments=True)
        except BILL_DATA_ERRORS as exc:
            one, ids = SettlementReport(), []
            bill_id = bill_set_aside(pk=pk, reason=_reason(exc), only_pending=only_pending)
            if bill_id is not None:
                one.bills, one.bills_dead, one.dead = 1, 1, [(bill_id, _reason(exc))]
        report.merge(one)
        grant_ids.extend(ids)
    return report, sorted(grant_ids)


def _reason(exc: Exception) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000]


def bill_set_aside(*, pk: int, reason: str, only_pending: bool = False) -> str | None:
    """Mark a bill that failed to settle on its own as dead with the reason; its bill_id (None: skipped, as
    another worker holds it or it is no longer pending)."""
    with transaction.atomic():
        locked = sql.bills_lock(bill_ids=[pk], only_pending=only_pending, lock=True)
        if not locked:
            return None
        Bill.objects.filter(pk=pk).update(status=Bill.Status.DEAD, dead_reason=reason, dead_at=timezone.now(),
                                          settle_failures=F("settle_failures") + 1)
    bill_id = locked[pk][0]
    logger.error("bill %s set aside as dead: %s", bill_id, reason)
    return bill_id


@transaction.atomic
def dead_bills_retry(*, bill_ids: list[int]) -> SettlementReport:
    """Settle dead bills again (after a fix): back to pending, then settled, or dead again with the new reason."""
    ids = list(Bill.objects.filter(pk__in=bill_ids, status=Bill.Status.DEAD).values_list("pk", flat=True))
    if not ids:
        return SettlementReport()
    Bill.objects.filter(pk__in=ids).update(status=Bill.Status.PENDING, dead_reason="", dead_at=None)
    report, _ = bills_settle(bill_ids=ids, only_pending=True)
    return report


def _batch_settle(*, bill_ids: list[int], ctx: SettlementContext, dry_run: bool = False,
                  dry_used: dict | None = None, only_pending: bool = False,
                  check_payments: bool = False) -> tuple[SettlementReport, list[int]]:
    """One transaction (a savepoint when called inside one) over the batch; raises on a data error."""
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
        # processed has none, so the lookup (into the month's fastest-growing table) is for re-runs only;
        # a payment rewarded on another bill meets the unique constraint, and the batch is run again with
        # `check_payments` (the lookup by payment).
        rerun = [pk for pk in bill_pks if bill_rows[pk][2] is not None]
        existing = sql.rewards_existing(bill_pks=rerun) if rerun and not check_payments else set()
        taken = sql.rewards_of_payments(campaign_ids=[rule.id for rule in ctx.rules],
                                        payment_ids={line[1] for line in lines}) if check_payments else None
        capped_ids = {rule.id for rule in ctx.rules if rule.upper_limit is not None}
        pairs = [(cid, customer) for cid in capped_ids for customer in customers]
        if dry_run:
            used = {(c, u): p for c, u, p in CampaignBudget.objects.filter(
                campaign_id__in=capped_ids, customer_id__in=customers).values_list("campaign_id", "customer_id",
                                                                                  "points")}
            if dry_used is not None:
                used.update({key: dry_used[key] for key in pairs if key in dry_used})
            lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used, existing=existing,
                       report=report, taken=taken)
            if dry_used is not None:
                dry_used.update(used)
            transaction.set_rollback(True)
            return report, []
        budgets = sql.budgets_lock(pairs=pairs)
        used = {key: points for key, (_, points) in budgets.items()}
        unmatched: dict[int, int] = {}
        planned = lines_plan(lines=lines, ctx=ctx, stages=stages, statuses=statuses, used=used,
                             existing=existing, report=report, unmatched_by_bill=unmatched, taken=taken)
        grant_ids = _write(planned, bill_rows, budgets, used, report)
        now = timezone.now()
        sql.bills_mark_settled(bill_pks=bill_pks, unmatched=unmatched, now=now)
        if grant_ids:
            from mercari_ops.common.enqueue import enqueue_after_commit

            from ..tasks import settle_grants_deliver_task

            enqueue_after_commit(settle_grants_deliver_task, grant_ids)  # broker down: settle_sweep retries
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


__all__ = ["SettlementContext", "SettlementReport", "bill_set_aside", "bills_settle", "dead_bills_retry",
           "lines_plan", "month_settle", "pending_bills_settle", "rules"]
