"""Pure campaign rules, shared by the estimate API, the settlement, the backtest and the provisions.

Nothing here touches the database, so the points shown on the item page and the
points granted at settlement come from the same code and cannot disagree.

Points: `floor(amount x rate / 100)` in integer arithmetic (the rate has exactly
one decimal, so it is held as tenths of a percent and `points = amount x tenths
// 1000`); a non-positive amount earns 0; then the result is limited to what is
left of the customer's cap (never below 0).

Filter schema (unknown keys are rejected, naming the key):

    user_filters    = {"mercard_status": [2, 3],               # card status must be one of these
                       "stage": {"min": 10, "max": 40}}         # effective loyalty stage range, inclusive
    payment_filters = {"mercari_inner_payment": true,           # marketplace payments (channel "mercari"
                       "mercari_outer_payment": false,          #   or a merchant master marked marketplace)
                       "merchant": {"shop_id": ["shop-1"], "invert": true},   # master IDs; invert = all but
                       "payment_methods": ["mercard", "id", "apple_pay"],
                       "excluded_categories": ["e_money_charge"]}   # payment method or master category

If neither inner nor outer is given both qualify; if one is given, the missing one is false.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.utils.translation import gettext

from mercari_ops.common.errors import ValidationFailed

# Why a payment earns nothing (the estimate's `reason`, the settlement report's buckets).
UNKNOWN_CUSTOMER = "unknown_customer"
NO_ACTIVE_CAMPAIGN = "no_active_campaign"
UNKNOWN_MERCHANT = "unknown_merchant"
CARD_STATUS = "card_status_not_eligible"
STAGE = "stage_not_eligible"
CHANNEL = "channel_not_eligible"
MERCHANT = "merchant_not_eligible"
PAYMENT_METHOD = "payment_method_not_eligible"
CATEGORY = "category_excluded"
NOT_POSITIVE = "amount_not_positive"
OUTSIDE_PERIOD = "outside_campaign_period"
ZERO_POINTS = "amount_earns_zero_points"  # e.g. ¥50 at 1.0% floors to 0 points: settlement rewards nothing
DUPLICATE_PAYMENT = "duplicate_payment"  # the payment is on an earlier bill too; that bill keeps the reward

USER_FILTER_KEYS = ("mercard_status", "stage")
PAYMENT_FILTER_KEYS = ("mercari_inner_payment", "mercari_outer_payment", "merchant", "payment_methods",
                       "excluded_categories")
MERCHANT_KEYS = ("shop_id", "invert")
STAGE_KEYS = ("min", "max")


# --- points --------------------------------------------------------------------


def rate_tenths(rate: Decimal | str | int | float) -> int:
    """A percent rate with at most one decimal as an exact integer of tenths (1.5 -> 15)."""
    try:
        value = Decimal(str(rate))
    except InvalidOperation:
        raise ValidationFailed(gettext("rate %(rate)s is not a number") % {"rate": repr(rate)}, "rate") from None
    if not value.is_finite():
        raise ValidationFailed(gettext("rate must be a finite number"), "rate")
    if value < 0:
        raise ValidationFailed(gettext("rate must not be negative (got %(value)s)") % {"value": value}, "rate")
    if value > 100:
        raise ValidationFailed(gettext("rate must be at most 100 percent (got %(value)s)") % {"value": value}, "rate")
    tenths = value * 10
    if tenths != tenths.to_integral_value():
        raise ValidationFailed(gettext("rate takes one decimal at most (got %(value)s)") % {"value": value}, "rate")
    return int(tenths)


def points_calculate(*, amount: int, rate_tenths: int, cap_left: int | None = None) -> int:
    """floor(amount x rate / 100) for a rate in tenths of a percent, limited to cap_left when given."""
    if amount <= 0 or rate_tenths <= 0:
        return 0
    points = amount * rate_tenths // 1000
    if cap_left is not None:
        points = max(0, min(points, cap_left))
    return points


# --- filter validation -----------------------------------------------------------


def _fail(message: str, field: str):
    raise ValidationFailed(message, field)


def _unknown_keys(value: dict, allowed: Iterable[str], prefix: str) -> None:
    for key in value:
        if key not in allowed:
            _fail(gettext("unknown key %(key)s; allowed: %(allowed)s")
                  % {"key": f"{prefix}.{key}", "allowed": ", ".join(allowed)}, f"{prefix}.{key}")


def _str_list(value, field: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _fail(gettext("%(field)s must be a list of non-empty strings") % {"field": field}, field)
    return value


def _int_list(value, field: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and not isinstance(v, bool)
                                                           for v in value):
        _fail(gettext("%(field)s must be a non-empty list of integers") % {"field": field}, field)
    return value


def _bool(value, field: str) -> bool:
    if not isinstance(value, bool):
        _fail(gettext("%(field)s must be true or false") % {"field": field}, field)
    return value


def user_filters_validate(value) -> dict:
    prefix = "user_filters"
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        _fail(gettext("%(field)s must be a JSON object") % {"field": prefix}, prefix)
    _unknown_keys(value, USER_FILTER_KEYS, prefix)
    if "mercard_status" in value:
        _int_list(value["mercard_status"], f"{prefix}.mercard_status")
    if "stage" in value:
        stage = value["stage"]
        if not isinstance(stage, dict):
            _fail(gettext("%(field)s must be an object with min and/or max") % {"field": f"{prefix}.stage"},
                  f"{prefix}.stage")
        _unknown_keys(stage, STAGE_KEYS, f"{prefix}.stage")
        for key in STAGE_KEYS:
            if key in stage and (isinstance(stage[key], bool) or not isinstance(stage[key], int) or stage[key] < 0):
                _fail(gettext("%(field)s must be a non-negative integer") % {"field": f"{prefix}.stage.{key}"},
                      f"{prefix}.stage.{key}")
        if stage.get("min", 0) > stage.get("max", 10**6):
            _fail(gettext("%(min)s must not be above %(max)s") % {"min": f"{prefix}.stage.min",
                                                                   "max": f"{prefix}.stage.max"},
                  f"{prefix}.stage.min")
    return value


def payment_filters_validate(value) -> dict:
    prefix = "payment_filters"
    if value in (None, ""):
        return {}
    if not isinstance(value, dict):
        _fail(gettext("%(field)s must be a JSON object") % {"field": prefix}, prefix)
    _unknown_keys(value, PAYMENT_FILTER_KEYS, prefix)
    for key in ("mercari_inner_payment", "mercari_outer_payment"):
        if key in value:
            _bool(value[key], f"{prefix}.{key}")
    inner, outer = _channel_flags(value)
    if not inner and not outer:
        _fail(gettext("%(field)s: mercari_inner_payment and mercari_outer_payment are both false, nothing would "
                      "qualify") % {"field": prefix}, f"{prefix}.mercari_inner_payment")
    if "merchant" in value:
        merchant = value["merchant"]
        if not isinstance(merchant, dict):
            _fail(gettext("%(field)s must be an object with shop_id and invert") % {"field": f"{prefix}.merchant"},
                  f"{prefix}.merchant")
        _unknown_keys(merchant, MERCHANT_KEYS, f"{prefix}.merchant")
        if "shop_id" not in merchant:
            _fail(gettext("%(field)s is required (a list of merchant master IDs)")
                  % {"field": f"{prefix}.merchant.shop_id"}, f"{prefix}.merchant.shop_id")
        _str_list(merchant["shop_id"], f"{prefix}.merchant.shop_id")
        if "invert" in merchant:
            _bool(merchant["invert"], f"{prefix}.merchant.invert")
    if "payment_methods" in value:
        if not _str_list(value["payment_methods"], f"{prefix}.payment_methods"):
            _fail(gettext("%(field)s must not be empty") % {"field": f"{prefix}.payment_methods"},
                  f"{prefix}.payment_methods")
    if "excluded_categories" in value:
        _str_list(value["excluded_categories"], f"{prefix}.excluded_categories")
    return value


def stage_rates_validate(rates: list[tuple[int, int, object]]) -> None:
    """Every rate valid, every range ordered, no two ranges of one campaign overlapping."""
    if not rates:
        _fail(gettext("a campaign needs at least one stage rate"), "rates")
    for index, (start, end, rate) in enumerate(rates):
        if start is None or end is None:
            _fail(gettext("rates.%(index)s: stage_from and stage_to are required") % {"index": index},
                  f"rates.{index}.stage_from")
        if end < start:
            _fail(gettext("rates.%(index)s: stage_to %(end)s is below stage_from %(start)s")
                  % {"index": index, "end": end, "start": start}, f"rates.{index}.stage_to")
        try:
            rate_tenths(rate)
        except ValidationFailed as exc:
            raise ValidationFailed(f"rates.{index}: {exc.message}", f"rates.{index}.rate") from None
    ordered = sorted(enumerate(rates), key=lambda item: item[1][0])
    for (_, previous), (index, current) in zip(ordered, ordered[1:], strict=False):
        if current[0] <= previous[1]:
            _fail(gettext("stage ranges %(first)s and %(second)s overlap")
                  % {"first": f"{previous[0]}-{previous[1]}", "second": f"{current[0]}-{current[1]}"},
                  f"rates.{index}.stage_from")


def period_validate(starts_at: datetime | None, ends_at: datetime | None) -> None:
    if starts_at is None:
        _fail(gettext("starts_at is required"), "starts_at")
    if ends_at is None:
        _fail(gettext("ends_at is required"), "ends_at")
    if ends_at <= starts_at:
        _fail(gettext("ends_at must be after starts_at"), "ends_at")


def upper_limit_validate(value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        _fail(gettext("upper_limit must be a non-negative integer of points (or empty for no cap)"), "upper_limit")


def _channel_flags(payment_filters: dict) -> tuple[bool, bool]:
    has_inner = "mercari_inner_payment" in payment_filters
    has_outer = "mercari_outer_payment" in payment_filters
    if not has_inner and not has_outer:
        return True, True
    return payment_filters.get("mercari_inner_payment", False), payment_filters.get("mercari_outer_payment", False)


# --- compiled rules ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MerchantInfo:
    master_id: str
    is_marketplace: bool
    category: str


@dataclass(frozen=True, slots=True)
class StageRate:
    stage_from: int
    stage_to: int
    tenths: int
    text: str


@dataclass(frozen=True, slots=True)
class Match:
    campaign_id: int
    version: int
    rate_tenths: int
    rate: str
    points: int  # before the cap


@dataclass(frozen=True, slots=True)
class CampaignRule:
    id: int
    version: int
    name: str
    starts_at: datetime
    ends_at: datetime
    upper_limit: int | None
    card_statuses: frozenset[int] | None
    stage_min: int | None
    stage_max: int | None
    inner: bool
    outer: bool
    shops: frozenset[str] | None
    shops_invert: bool
    methods: frozenset[str] | None
    excluded: frozenset[str]
    rates: tuple[StageRate, ...]

    @classmethod
    def build(cls, *, id, version, name, starts_at, ends_at, upper_limit, user_filters, payment_filters,
              rates: Iterable[tuple[int, int, object]]) -> CampaignRule:
        user_filters = user_filters or {}
        payment_filters = payment_filters or {}
        stage = user_filters.get("stage") or {}
        merchant = payment_filters.get("merchant")
        inner, outer = _channel_flags(payment_filters)
        statuses = user_filters.get("mercard_status")
        methods = payment_filters.get("payment_methods")
        return cls(
            id=id, version=version, name=name, starts_at=starts_at, ends_at=ends_at, upper_limit=upper_limit,
            card_statuses=frozenset(statuses) if statuses is not None else None,
            stage_min=stage.get("min"), stage_max=stage.get("max"), inner=inner, outer=outer,
            shops=frozenset(merchant["shop_id"]) if merchant else None,
            shops_invert=bool(merchant.get("invert")) if merchant else False,
            methods=frozenset(methods) if methods is not None else None,
            excluded=frozenset(payment_filters.get("excluded_categories") or ()),
            rates=tuple(sorted(
                (StageRate(int(a), int(b), rate_tenths(r), f"{Decimal(str(r)):.1f}") for a, b, r in rates),
                key=lambda rate: rate.stage_from,
            )),
        )

    def rate_for(self, stage: int) -> StageRate | None:
        for rate in self.rates:
            if rate.stage_from <= stage <= rate.stage_to:
                return rate
        return None

    # The checks yield every failing condition in evaluation order: `user_reason`/`payment_reason` (the
    # estimate, the settlement) take the first, `exclusions` (the backtest's reasons) takes them all.

    def _user_checks(self, *, stage: int | None, card_status: int | None) -> Iterator[str]:
        if stage is None:
            yield UNKNOWN_CUSTOMER
            return
        if self.card_statuses is not None and card_status not in self.card_statuses:
            yield CARD_STATUS
        if (self.stage_min is not None and stage < self.stage_min) or (
            self.stage_max is not None and stage > self.stage_max
        ):
            yield STAGE

    def _payment_checks(self, *, channel: str, merchant: MerchantInfo | None, payment_method: str,
                        paid_at: datetime | None) -> Iterator[str]:
        if paid_at is not None and not (self.starts_at <= paid_at < self.ends_at):
            yield OUTSIDE_PERIOD
        inner = channel == "mercari" or (merchant is not None and merchant.is_marketplace)
        if (inner and not self.inner) or (not inner and not self.outer):
            yield CHANNEL
        if self.shops is not None:
            listed = merchant is not None and merchant.master_id in self.shops
            if listed == self.shops_invert:
                yield MERCHANT
        if self.methods is not None and payment_method not in self.methods:
            yield PAYMENT_METHOD
        if payment_method in self.excluded or (merchant is not None and merchant.category in self.excluded):
            yield CATEGORY

    def user_reason(self, *, stage: int | None, card_status: int | None) -> str | None:
        return next(self._user_checks(stage=stage, card_status=card_status), None)

    def payment_reason(self, *, channel: str, merchant: MerchantInfo | None, payment_method: str,
                       paid_at: datetime | None = None) -> str | None:
        """Why this payment does not qualify, or None. `merchant` None = no merchant ID was given."""
        return next(self._payment_checks(channel=channel, merchant=merchant, payment_method=payment_method,
                                         paid_at=paid_at), None)

    def exclusions(self, *, stage: int | None, card_status: int | None, amount: int, channel: str,
                   merchant: MerchantInfo | None, payment_method: str, paid_at: datetime | None = None
                   ) -> set[str]:
        """Every reason this payment earns nothing under this rule (empty: it earns points).

        Empty exactly when `evaluate` gives a Match with points above 0, which is when the settlement
        rewards the line (tested); the same checks, all of them instead of the first.
        """
        found = set(self._user_checks(stage=stage, card_status=card_status))
        found.update(self._payment_checks(channel=channel, merchant=merchant, payment_method=payment_method,
                                          paid_at=paid_at))
        rate = self.rate_for(stage) if stage is not None else None
        if stage is not None and rate is None:
            found.add(STAGE)
        if amount <= 0:
            found.add(NOT_POSITIVE)
        elif rate is not None and points_calculate(amount=amount, rate_tenths=rate.tenths) <= 0:
            found.add(ZERO_POINTS)
        return found

    def line_exclusion(self, *, merchant: MerchantInfo | None, stage: int | None, card_status: int | None,
                       amount: int, channel: str, payment_method: str, paid_at: datetime | None = None
                       ) -> str | None:
        """The one reason a stored bill line earns nothing (the first of EXCLUSION_ORDER), or None.

        Settlement semantics: `merchant` None = a merchant ID no master knows (the line is skipped).
        """
        if merchant is None:
            return UNKNOWN_MERCHANT
        found = self.exclusions(stage=stage, card_status=card_status, amount=amount, channel=channel,
                                merchant=merchant, payment_method=payment_method, paid_at=paid_at)
        return next((reason for reason in EXCLUSION_ORDER if reason in found), None)

    def evaluate(self, *, stage: int | None, card_status: int | None, amount: int, channel: str,
                 merchant: MerchantInfo | None, payment_method: str, paid_at: datetime | None = None
                 ) -> Match | str:
        """The uncapped match of one payment, or the reason it earns nothing."""
        reason = self.user_reason(stage=stage, card_status=card_status)
        if reason is None:
            reason = self.payment_reason(channel=channel, merchant=merchant, payment_method=payment_method,
                                         paid_at=paid_at)
        if reason is not None:
            return reason
        rate = self.rate_for(stage)
        if rate is None:
            return STAGE
        if amount <= 0:
            return NOT_POSITIVE
        return Match(self.id, self.version, rate.tenths, rate.text,
                     points_calculate(amount=amount, rate_tenths=rate.tenths))


class MerchantDirectory:
    """merchant_id (+ payment method) -> master; a method-specific alias wins over a method-less one."""

    __slots__ = ("_by_key",)

    def __init__(self, aliases: Iterable[tuple[str, str, MerchantInfo]]):
        self._by_key: dict[tuple[str, str], MerchantInfo] = {
            (merchant_id, method or ""): info for merchant_id, method, info in aliases
        }

    def lookup(self, merchant_id: str, payment_method: str) -> MerchantInfo | None:
        found = self._by_key.get((merchant_id, payment_method))
        return found if found is not None else self._by_key.get((merchant_id, ""))

    def __len__(self) -> int:
        return len(self._by_key)


# Customer-level reasons first; then the campaign that got furthest (channel is the least telling, since
# an inner and an outer campaign always disagree on it).
REASON_ORDER = (UNKNOWN_CUSTOMER, UNKNOWN_MERCHANT, CARD_STATUS, STAGE, CATEGORY, MERCHANT, PAYMENT_METHOD,
                NOT_POSITIVE, OUTSIDE_PERIOD, CHANNEL, NO_ACTIVE_CAMPAIGN)


# A backtest counts each excluded line once, under the first of these that applies (issue 19): what the
# data lacks, then who the customer is, then what was bought where and how, then the amount.
EXCLUSION_ORDER = (DUPLICATE_PAYMENT, UNKNOWN_MERCHANT, UNKNOWN_CUSTOMER, CARD_STATUS, STAGE, CATEGORY, MERCHANT,
                   PAYMENT_METHOD, CHANNEL, NOT_POSITIVE, ZERO_POINTS, OUTSIDE_PERIOD)


def best_reason(reasons: Iterable[str]) -> str:
    """The most telling reason among the campaigns that did not match."""
    found = set(reasons)
    for reason in REASON_ORDER:
        if reason in found:
            return reason
    return NO_ACTIVE_CAMPAIGN
