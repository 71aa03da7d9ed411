"""Reads: the stage for in-process callers, window totals, the customer profile for the API and admin."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime

from django.conf import settings
from django.db.models import BooleanField, ExpressionWrapper, Q, Sum
from django.utils import timezone
from django.utils.translation import gettext
from psycopg import sql

from mercari_ops.common.business_time import business_month_label
from mercari_ops.inbox.models import InboxEvent

from .models import Customer, RebucketedEvent, RecomputeJob, StageChange, StagePin, StageRuleVersion
from .rules import (
    DEFAULT_DEFINITION,
    METRICS,
    RuleSet,
    metrics_add,
    metrics_empty,
    missing_for,
    ruleset_build,
    stage_evaluate,
    stage_meets,
    threshold_report,
    window_start,
)
from .services import loyalty_sql


def customer_stage_get(*, customer_id: str) -> int | None:
    """The customer's effective stage (None = unknown customer). One query on the unique customer_id index.

    Customer.stage already includes an operator pin; a pin that expired minutes ago (before the
    `loyalty.pins_expire` job cleared it) no longer counts.
    """
    row = (Customer.objects.filter(customer_id=customer_id)
           .values_list("stage", "rules_stage", "pin_expires_at").first())
    if row is None:
        return None
    stage, rules_stage, pin_expires_at = row
    if pin_expires_at is not None and pin_expires_at <= timezone.now():
        return rules_stage
    return stage


def customer_stages_many(*, customer_ids: Iterable[str]) -> dict[str, int]:
    """Stages of many customers (settlement, backtest): one query; unknown customers are absent."""
    return dict(Customer.objects.filter(customer_id__in=list(customer_ids)).values_list("customer_id", "stage"))


def customer_stage_sql() -> sql.Composed:
    """The customer's stage as a scalar subquery on customer_id %s, for a caller's one-query read (the
    estimate's hot path): loyalty's table stays loyalty's to name."""
    def name(attname: str) -> sql.Identifier:
        return sql.Identifier(Customer._meta.get_field(attname).column)

    return sql.SQL("SELECT {stage} FROM {table} WHERE {customer_id} = %s").format(
        stage=name("stage"), table=sql.Identifier(Customer._meta.db_table), customer_id=name("customer_id"))


def stage_lowest() -> int:
    """The stage of a customer with no activity yet: the lowest of the rules in force."""
    return rules_active().stages[0].stage


def stage_label(stage: int | None, *, ruleset: RuleSet | None = None) -> str:
    """A stage as people read it: "Silver (20)" from the rules in force (or `ruleset`); "Stage 25" for a
    number those rules do not name; an em dash for None."""
    if stage is None:
        return "\u2014"
    rule = (ruleset or rules_active()).rule(stage)
    return f"{rule.name} ({stage})" if rule is not None else gettext("Stage %(stage)s") % {"stage": stage}


def stage_labels(stages: Iterable[int | None]) -> dict[int | None, str]:
    """`stage_label` of several stages with one read of the rules in force (for a page listing many)."""
    ruleset = rules_active()
    return {stage: stage_label(stage, ruleset=ruleset) for stage in stages}


_RULESETS: dict[int | None, RuleSet] = {}
_UNSEEN = object()  # no version read yet in this process; None = read, and none published
_LAST_SEEN: dict[str, object] = {"version": _UNSEEN}


def rules_cache_clear() -> None:
    """Forget parsed versions (a test database rolled back can reuse a version number)."""
    _RULESETS.clear()
    _LAST_SEEN["version"] = _UNSEEN


def ruleset_of_version(version: int | None) -> RuleSet:
    """A rules version, parsed once per process (versions are immutable)."""
    ruleset = _RULESETS.get(version)
    if ruleset is None:
        if version is None:  # none published: version 0, one base stage
            ruleset = ruleset_build(0, DEFAULT_DEFINITION)
        else:
            definition = StageRuleVersion.objects.values_list("definition", flat=True).get(version=version)
            ruleset = ruleset_build(version, definition)
        _RULESETS[version] = ruleset
    _LAST_SEEN["version"] = version
    return ruleset


def rules_active() -> RuleSet:
    """The rules in force: the highest version (version 0 = one base stage until rules are published).

    The version number is read every time (one indexed query), so a new version is in force
    everywhere as soon as it commits.
    """
    return ruleset_of_version(loyalty_sql.rules_version())


def window_metrics(*, customer_pks: Iterable[int], start: date) -> dict[int, dict[str, int]]:
    """Window totals per customer from a dozen monthly rows each: one GROUP BY query for all of them."""
    return _window_metrics(list(customer_pks), start, with_version=False)[0]


def _window_metrics(pks: list[int], start: date, with_version: bool) -> tuple[dict[int, dict[str, int]], int | None]:
    result = {pk: metrics_empty() for pk in pks}
    version = None
    if not pks and not with_version:
        return result, None
    for pk, kind, amount, count in loyalty_sql.window_totals(customer_pks=pks, start=start,
                                                             with_version=with_version):
        if pk is None:
            version = amount
            continue
        metrics_add(result[pk], kind, int(amount or 0), int(count or 0))
    return result, version


def rules_and_window_metrics(*, customer_pks: list[int], now: datetime) -> tuple[RuleSet, dict[int, dict[str, int]]]:
    """The rules in force and the window totals under them, in one round trip in the usual case.

    The window start depends on the rules, so the query uses the last version this process saw and
    also returns the current version number; if a newer version appeared, it queries again.
    """
    guess = rules_guess()
    metrics, version = _window_metrics(customer_pks, window_start(now, guess.window_months), with_version=True)
    if rules_guess_holds(guess, version):
        return guess, metrics
    ruleset = ruleset_of_version(version)
    return ruleset, window_metrics(customer_pks=customer_pks, start=window_start(now, ruleset.window_months))


def rules_guess() -> RuleSet:
    """The rules version this process saw last (no query), or the rules in force on first use."""
    seen = _LAST_SEEN["version"]
    return rules_active() if seen is _UNSEEN else ruleset_of_version(seen)


def rules_guess_holds(guess: RuleSet, version: int | None) -> bool:
    """Whether `guess` is the version a query read as the highest (None: no rules published, version 0)."""
    return version == guess.version or (version is None and guess.version == 0)


def effective_stage(rules_stage: int, pin_floor: int | None, pin_expires_at: datetime | None,
                    now: datetime) -> int:
    if pin_floor is not None and pin_expires_at is not None and pin_expires_at > now:
        return max(rules_stage, pin_floor)
    return rules_stage


def _change_dict(change: StageChange) -> dict:
    return {"from": change.from_stage, "to": change.to_stage, "cause": change.cause, "reason": change.reason,
            "rule_version": change.rule_version, "at": change.at}


def customer_profile_get(*, customer_id: str, now: datetime | None = None) -> dict | None:
    """Stage, the window totals it came from, the next stage and what is missing, recent changes."""
    customer = Customer.objects.filter(customer_id=customer_id).first()
    if customer is None:
        return None
    now = now or timezone.now()
    ruleset = rules_active()
    start = window_start(now, ruleset.window_months)
    metrics = window_metrics(customer_pks=[customer.pk], start=start)[customer.pk]
    stage = effective_stage(customer.rules_stage, customer.pin_floor, customer.pin_expires_at, now)
    next_rule = ruleset.next_rule(stage)
    pin = None
    if customer.pin_floor is not None and customer.pin_expires_at and customer.pin_expires_at > now:
        active = customer.pins.filter(revoked_at__isnull=True).order_by("-created_at").first()
        pin = {"floor": customer.pin_floor, "expires_at": customer.pin_expires_at,
               "reason": active.reason if active else ""}
    changes = customer.stage_changes.order_by("-at", "-id")[: settings.LOYALTY_API_RECENT_CHANGES]
    return {
        "customer_id": customer.customer_id,
        "stage": stage,
        "stage_name": ruleset.name(stage),
        "rules_stage": customer.rules_stage,
        "pin": pin,
        "rules_version": ruleset.version,
        "window": {"months": ruleset.window_months, "from": start.strftime("%Y-%m"),
                   "to": business_month_label(now)},
        "totals": {kind: {"amount": metrics[f"{kind}_amount"], "count": metrics[f"{kind}_count"]}
                   for kind in ("buy", "sell", "pay")},
        "next_stage": None if next_rule is None else {
            "stage": next_rule.stage, "name": next_rule.name, "combine": next_rule.combine,
            "thresholds": next_rule.thresholds, "missing": missing_for(next_rule, metrics),
        },
        "recent_changes": [_change_dict(change) for change in changes],
    }


def customer_explain(*, customer: Customer, now: datetime | None = None) -> dict:
    """The admin's "why this stage" view: every stage of the rules against this customer's window."""
    now = now or timezone.now()
    ruleset = rules_active()
    start = window_start(now, ruleset.window_months)
    metrics = window_metrics(customer_pks=[customer.pk], start=start)[customer.pk]
    evaluated = stage_evaluate(ruleset, metrics)
    months = defaultdict(lambda: metrics_empty())
    for total in customer.monthly_totals.filter(month__gte=window_start(now, 24)).order_by("-month"):
        metrics_add(months[total.month], total.kind, total.amount, total.count)
    lifetime = metrics_empty()
    for kind, amount, count in (customer.monthly_totals.values_list("kind").annotate(Sum("amount"), Sum("count"))
                                .order_by()):
        metrics_add(lifetime, kind, amount or 0, count or 0)
    return {
        "ruleset": ruleset,
        "window_from": start,
        "metrics": metrics,
        "metric_names": METRICS,
        "lifetime": lifetime,
        "evaluated_stage": evaluated.stage,
        "stages": [{"rule": rule, "met": stage_meets(rule, metrics), "checks": threshold_report(rule, metrics),
                    "missing": missing_for(rule, metrics)} for rule in ruleset.stages],
        "months": [{"month": month, "in_window": month >= start, "metrics": values}
                   for month, values in sorted(months.items(), reverse=True)],
        "effective_stage": effective_stage(customer.rules_stage, customer.pin_floor, customer.pin_expires_at, now),
        "pins": list(customer.pins.order_by("-created_at")[:20]),
        "changes": list(customer.stage_changes.order_by("-at", "-id")[:50]),
    }


def recompute_job_latest() -> RecomputeJob | None:
    return RecomputeJob.objects.select_related("rule_version").order_by("-created_at", "-id").first()


def pin_active_for(*, customer: Customer, now: datetime | None = None) -> StagePin | None:
    now = now or timezone.now()
    return customer.pins.filter(revoked_at__isnull=True, expires_at__gt=now).order_by("-created_at").first()


# --- re-bucketing (loyalty_rebucket): what the inbox counted, what was moved ---------------------------


def inbox_counted_get(*, topic: str, event_ids: list[str]) -> dict[str, tuple[datetime, bool]]:
    """{event_id: (processed_at, payload kept)} of those events the inbox counted (processed rows of `topic`)."""
    kept = ExpressionWrapper(Q(payload__isnull=False), output_field=BooleanField())
    rows = (InboxEvent.objects.filter(topic=topic, event_id__in=event_ids, status=InboxEvent.Status.PROCESSED)
            .values_list("event_id", "processed_at", kept))
    return {event_id: (processed_at, has_payload) for event_id, processed_at, has_payload in rows}


def inbox_payloads_next(*, topic: str, after_pk: int, limit: int) -> list[tuple[int, dict]]:
    """The next `limit` processed rows of `topic` still holding their payload, as (pk, payload), in pk order."""
    return list(InboxEvent.objects.filter(topic=topic, status=InboxEvent.Status.PROCESSED, payload__isnull=False,
                                          pk__gt=after_pk).order_by("pk").values_list("pk", "payload")[:limit])


def inbox_payloadless_count(*, topic: str, processed_before: datetime) -> int:
    """How many events of `topic` the inbox counted before `processed_before` and keeps no payload of."""
    return InboxEvent.objects.filter(topic=topic, status=InboxEvent.Status.PROCESSED, payload__isnull=True,
                                     processed_at__lt=processed_before).count()


def rebucketed_among(*, event_ids: list[str]) -> set[str]:
    """Those of `event_ids` that loyalty_rebucket already moved."""
    return set(RebucketedEvent.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))
