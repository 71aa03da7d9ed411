"""Stage moves: the shared restage step, nightly downgrades, operator pins and their expiry.

Lock order: every writer locks customer rows in customer_id order (the activity handler, the
nightly job, the recomputation), so two of them never deadlock on a batch of customers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext

from mercari_ops.common.audit import audit_record
from mercari_ops.common.errors import ValidationFailed

from .. import selectors
from ..metrics import stage_changes_counted
from ..models import Customer, StageChange, StagePin
from ..rules import RuleSet, change_reason, stage_evaluate, window_start
from . import loyalty_sql
from .loyalty_sql import NEW_CUSTOMER


@dataclass
class CustomerState:
    pk: int
    customer_id: str
    stage: int
    rules_stage: int
    pin_floor: int | None
    pin_expires_at: datetime | None


STATE_FIELDS = ("pk", "customer_id", "stage", "rules_stage", "pin_floor", "pin_expires_at")


def customers_lock_batch(*, after: str, limit: int, rules_stage_above: int | None = None) -> list[CustomerState]:
    """Lock the next `limit` customers in customer_id order (keyset pagination, no OFFSET)."""
    queryset = Customer.objects.select_for_update().filter(customer_id__gt=after)
    if rules_stage_above is not None:
        queryset = queryset.filter(rules_stage__gt=rules_stage_above)
    return [CustomerState(*row) for row in queryset.order_by("customer_id").values_list(*STATE_FIELDS)[:limit]]


def _stage_writes(updates: list[tuple], changes: list[StageChange]) -> None:
    """Write (rules_stage, stage, at, pk) tuples and record the changes: one statement, one round trip
    inside the caller's transaction."""
    if not updates:
        return
    stage_changes_counted([(change.from_stage, change.to_stage) for change in changes])
    loyalty_sql.stages_write(updates=updates, changes=[
        (change.customer_id, change.from_stage, change.to_stage, change.from_rules_stage, change.to_rules_stage,
         change.cause, json.dumps(change.reason), change.rule_version, change.at) for change in changes])


def restage(*, states: list[CustomerState], ruleset: RuleSet, now: datetime, trigger: str,
            allow_up: bool, allow_down: bool, up_cause: str = StageChange.Cause.UPGRADE,
            down_cause: str = StageChange.Cause.DOWNGRADE, metrics_by_pk: dict | None = None) -> int:
    """Evaluate locked customers against `ruleset` and record every stage that moves. Returns the changes."""
    if not states:
        return 0
    start = window_start(now, ruleset.window_months)
    if metrics_by_pk is None:
        metrics_by_pk = selectors.window_metrics(customer_pks=[state.pk for state in states], start=start)
    updates, changes = [], []
    for state in states:
        metrics = metrics_by_pk[state.pk]
        evaluated = stage_evaluate(ruleset, metrics).stage
        is_new = state.rules_stage == NEW_CUSTOMER
        old_rules = ruleset.base_stage if is_new else state.rules_stage
        new_rules = old_rules
        if is_new or (evaluated > old_rules and allow_up) or (evaluated < old_rules and allow_down):
            new_rules = evaluated
        new_stage = selectors.effective_stage(new_rules, state.pin_floor, state.pin_expires_at, now)
        old_stage = ruleset.base_stage if is_new else state.stage
        if is_new:
            updates.append((new_rules, new_stage, now, state.pk))
        elif (new_rules, new_stage) != (state.rules_stage, state.stage):
            updates.append((new_rules, new_stage, now, state.pk))
        if (new_rules, new_stage) == (old_rules, old_stage):
            continue
        if new_rules > old_rules:
            cause = up_cause
        elif new_rules < old_rules:
            cause = down_cause
        else:
            cause = StageChange.Cause.PIN_EXPIRED
        reason = change_reason(ruleset, metrics, from_stage=old_rules, to_stage=new_rules, window_from=start,
                               trigger=trigger)
        if new_stage != new_rules:
            reason["pin_floor"] = state.pin_floor
        changes.append(StageChange(customer_id=state.pk, from_stage=old_stage, to_stage=new_stage,
                                   from_rules_stage=old_rules, to_rules_stage=new_rules, cause=cause,
                                   reason=reason, rule_version=ruleset.version, at=now))
    _stage_writes(updates, changes)
    return len(changes)


def stages_downgrade_nightly(*, now: datetime | None = None, batch_size: int = 1000) -> dict[str, int]:
    """Apply downgrades as months leave the window; one short transaction per batch of customers."""
    now = now or timezone.now()
    expired = pins_expire(now=now)
    checked = changed = 0
    cursor = ""
    while True:
        with transaction.atomic():
            ruleset = selectors.rules_active()
            states = customers_lock_batch(after=cursor, limit=batch_size, rules_stage_above=ruleset.base_stage)
            if not states:
                break
            changed += restage(states=states, ruleset=ruleset, now=now, trigger="nightly", allow_up=False,
                               allow_down=True)
        checked += len(states)
        cursor = states[-1].customer_id
    return {"checked": checked, "downgraded": changed, "pins_expired": expired}


# --- pins ------------------------------------------------------------------------


def _customer_for_update(customer_id: str, ruleset: RuleSet) -> Customer:
    customer = Customer.objects.select_for_update().filter(customer_id=customer_id).first()
    if customer is None:
        customer = Customer.objects.create(customer_id=customer_id, stage=ruleset.base_stage,
                                           rules_stage=ruleset.base_stage)
    return customer


def _effective_apply(customer: Customer, *, pin_floor: int | None, pin_expires_at: datetime | None,
                     cause: str, reason: dict, ruleset: RuleSet, now: datetime) -> StageChange | None:
    new_stage = selectors.effective_stage(customer.rules_stage, pin_floor, pin_expires_at, now)
    old_stage = customer.stage
    customer.pin_floor, customer.pin_expires_at, customer.stage = pin_floor, pin_expires_at, new_stage
    fields = ["pin_floor", "pin_expires_at", "stage"]
    if new_stage != old_stage:
        customer.stage_changed_at = now
        fields.append("stage_changed_at")
    customer.save(update_fields=fields)
    if new_stage == old_stage:
        return None
    stage_changes_counted([(old_stage, new_stage)])
    return StageChange.objects.create(customer=customer, from_stage=old_stage, to_stage=new_stage,
                                      from_rules_stage=customer.rules_stage, to_rules_stage=customer.rules_stage,
                                      cause=cause, reason=reason, rule_version=ruleset.version, at=now)


def stage_pin_validate(*, customer_id: str, floor: int, reason: str, expires_at: datetime, by: str,
                       now: datetime | None = None, ruleset: RuleSet | None = None) -> None:
    """Raise ValidationFailed naming the field if this pin cannot be set."""
    now = now or timezone.now()
    ruleset = ruleset or selectors.rules_active()
    if not customer_id or len(customer_id) > 64:
        # gettext: the admin form shows these in the page's language; the API path is always English
        raise ValidationFailed(gettext("customer_id must be 1 to 64 characters"), "customer_id")
    if ruleset.rule(floor) is None:
        raise ValidationFailed(gettext("floor must be one of the stages %(stages)s") % {
            "stages": [r.stage for r in ruleset.stages]}, "floor")
    if not reason or not reason.strip():
        raise ValidationFailed(gettext("a reason is required"), "reason")
    if expires_at <= now:
        raise ValidationFailed(gettext("expires_at must be in the future"), "expires_at")
    if not by:
        raise ValidationFailed(gettext("the operator's name is required"), "by")


@transaction.atomic
def stage_pin_set(*, customer_id: str, floor: int, reason: str, expires_at: datetime, by: str,
                  now: datetime | None = None, request=None) -> StagePin:
    """Pin a floor under a customer's stage until `expires_at`. Replaces (revokes) an active pin."""
    now = now or timezone.now()
    ruleset = selectors.rules_active()
    stage_pin_validate(customer_id=customer_id, floor=floor, reason=reason, expires_at=expires_at, by=by, now=now,
                       ruleset=ruleset)
    customer = _customer_for_update(customer_id, ruleset)
    before = {"stage": customer.stage, "pin_floor": customer.pin_floor, "pin_expires_at": customer.pin_expires_at}
    customer.pins.filter(revoked_at__isnull=True).update(revoked_at=now, revoked_by=by,
                                                         revoke_reason="replaced by a new pin")
    pin = StagePin.objects.create(customer=customer, floor=floor, reason=reason.strip(), expires_at=expires_at,
                                  created_by=by, created_at=now)
    _effective_apply(customer, pin_floor=floor, pin_expires_at=expires_at, cause=StageChange.Cause.PIN,
                     reason={"pin_id": pin.pk, "floor": floor, "reason": pin.reason, "by": by,
                             "expires_at": expires_at.isoformat(), "rules_stage": customer.rules_stage},
                     ruleset=ruleset, now=now)
    audit_record(action="stage_pin.set", target=pin, request=request, actor=None if request else by,
                 before=before, after={"stage": customer.stage, "pin_floor": floor, "pin_expires_at": expires_at},
                 note=pin.reason)
    return pin


@transaction.atomic
def stage_pin_revoke(*, pin_id: int, by: str, reason: str = "", now: datetime | None = None,
                     request=None) -> StagePin:
    now = now or timezone.now()
    pin = StagePin.objects.select_related("customer").get(pk=pin_id)
    customer = Customer.objects.select_for_update().get(pk=pin.customer_id)
    pin = StagePin.objects.select_for_update().get(pk=pin_id)
    if pin.revoked_at is not None:
        return pin
    pin.revoked_at, pin.revoked_by, pin.revoke_reason = now, by, reason
    pin.save(update_fields=["revoked_at", "revoked_by", "revoke_reason"])
    before = {"stage": customer.stage, "pin_floor": customer.pin_floor, "revoked_at": None}
    if not customer.pins.filter(revoked_at__isnull=True, expires_at__gt=now).exists():
        _effective_apply(customer, pin_floor=None, pin_expires_at=None, cause=StageChange.Cause.PIN_REVOKED,
                         reason={"pin_id": pin.pk, "floor": pin.floor, "by": by, "revoke_reason": reason,
                                 "rules_stage": customer.rules_stage},
                         ruleset=selectors.rules_active(), now=now)
    audit_record(action="stage_pin.revoke", target=pin, request=request, actor=None if request else by,
                 before=before, after={"stage": customer.stage, "pin_floor": customer.pin_floor, "revoked_at": now},
                 note=reason)
    return pin


def pins_expire(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Drop expired pins from customers (their stage falls back to the rules stage); returns how many."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic():
            customers = list(Customer.objects.select_for_update()
                             .filter(pin_expires_at__isnull=False, pin_expires_at__lte=now)
                             .order_by("customer_id")[:batch_size])
            if not customers:
                return total
            ruleset = selectors.rules_active()
            for customer in customers:
                floor, expired_at = customer.pin_floor, customer.pin_expires_at
                _effective_apply(customer, pin_floor=None, pin_expires_at=None,
                                 cause=StageChange.Cause.PIN_EXPIRED,
                                 reason={"floor": floor, "expired_at": expired_at.isoformat(),
                                         "rules_stage": customer.rules_stage},
                                 ruleset=ruleset, now=now)
            total += len(customers)
