"""The pure rules: points, filters, validation messages that name the bad key."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.utils import translation

from campaigns import rules
from campaigns.rules import CampaignRule, MerchantInfo, points_calculate, rate_tenths
from mercari_ops.common.errors import ValidationFailed

T0, T1 = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
MARKET = MerchantInfo("mercari", True, "")
SHOP = MerchantInfo("shop-77", False, "")
EXCLUDED_SHOP = MerchantInfo("shop-88", False, "")
CHARGE = MerchantInfo("charge-1", False, "e_money_charge")


@pytest.fixture(autouse=True)
def _english():
    """The messages below are the English ones (the API's; the admin shows them in the user's language)."""
    with translation.override("en"):
        yield


@pytest.mark.parametrize("amount, rate, expected", [
    (3000, "1.5", 45), (999, "1.0", 9), (1, "4.0", 0), (199, "0.5", 0), (200, "0.5", 1), (12345, "2.5", 308),
    (0, "4.0", 0), (-3000, "4.0", 0), (10**9, "100", 10**9),
])
def test_points_are_floored(amount, rate, expected):
    assert points_calculate(amount=amount, rate_tenths=rate_tenths(rate)) == expected


def test_points_are_exact_where_float_would_round_wrong():
    # 0.1 * 3 in binary floating point is 0.30000000000000004; integers never drift.
    assert points_calculate(amount=1000, rate_tenths=rate_tenths(Decimal("0.3"))) == 3
    assert points_calculate(amount=70, rate_tenths=rate_tenths("10.0")) == 7


@pytest.mark.parametrize("cap_left, expected", [(None, 45), (100, 45), (45, 45), (10, 10), (0, 0), (-5, 0)])
def test_cap_left_limits_points(cap_left, expected):
    assert points_calculate(amount=3000, rate_tenths=15, cap_left=cap_left) == expected


@pytest.mark.parametrize("rate, message", [("-1.0", "must not be negative"), ("1.25", "one decimal"),
                                           ("abc", "not a number"), ("101", "at most 100"), ("NaN", "finite")])
def test_bad_rates_are_rejected(rate, message):
    with pytest.raises(ValidationFailed, match=message):
        rate_tenths(rate)


@pytest.mark.parametrize("value, field", [
    ({"mercard_statuz": [2]}, "user_filters.mercard_statuz"),
    ({"stage": {"min": 10, "maximum": 20}}, "user_filters.stage.maximum"),
    ({"stage": {"min": 30, "max": 20}}, "user_filters.stage.min"),
    ({"mercard_status": "2"}, "user_filters.mercard_status"),
    ([1, 2], "user_filters"),
])
def test_user_filter_errors_name_the_key(value, field):
    with pytest.raises(ValidationFailed) as caught:
        rules.user_filters_validate(value)
    assert caught.value.field == field
    assert field.split(".")[-1] in caught.value.message


@pytest.mark.parametrize("value, field", [
    ({"merchant": {"shop_ids": ["a"]}}, "payment_filters.merchant.shop_ids"),
    ({"merchant": {"invert": True}}, "payment_filters.merchant.shop_id"),
    ({"merchant": {"shop_id": "a"}}, "payment_filters.merchant.shop_id"),
    ({"merchant": {"shop_id": ["a"], "invert": "yes"}}, "payment_filters.merchant.invert"),
    ({"mercari_inner_payment": "true"}, "payment_filters.mercari_inner_payment"),
    ({"mercari_inner_payment": False, "mercari_outer_payment": False}, "payment_filters.mercari_inner_payment"),
    ({"excluded_category": ["e_money_charge"]}, "payment_filters.excluded_category"),
    ({"payment_methods": []}, "payment_filters.payment_methods"),
])
def test_payment_filter_errors_name_the_key(value, field):
    with pytest.raises(ValidationFailed) as caught:
        rules.payment_filters_validate(value)
    assert caught.value.field == field


def test_documented_filters_are_accepted():
    rules.user_filters_validate({"mercard_status": [2, 3], "stage": {"min": 10, "max": 40}})
    rules.payment_filters_validate({"mercari_inner_payment": True, "mercari_outer_payment": False,
                                    "merchant": {"shop_id": ["shop-1"], "invert": True},
                                    "payment_methods": ["mercard", "id"], "excluded_categories": ["e_money_charge"]})


def test_overlapping_stage_ranges_are_rejected_with_both_ranges_named():
    with pytest.raises(ValidationFailed) as caught:
        rules.stage_rates_validate([(10, 20, "1.0"), (30, 40, "3.0"), (20, 29, "2.0")])
    assert caught.value.message == "stage ranges 10-20 and 20-29 overlap"
    assert caught.value.field == "rates.2.stage_from"


def test_negative_rate_and_reversed_range_are_rejected():
    with pytest.raises(ValidationFailed, match="rates.0: rate must not be negative"):
        rules.stage_rates_validate([(10, 20, "-1.0")])
    with pytest.raises(ValidationFailed, match="stage_to 10 is below stage_from 20"):
        rules.stage_rates_validate([(20, 10, "1.0")])


def test_end_before_start_is_rejected():
    with pytest.raises(ValidationFailed) as caught:
        rules.period_validate(T1, T0)
    assert caught.value.field == "ends_at"


def _rule(**payment_filters) -> CampaignRule:
    return CampaignRule.build(id=1, version=1, name="c", starts_at=T0, ends_at=T1, upper_limit=None,
                              user_filters={"mercard_status": [2, 3], "stage": {"min": 10}},
                              payment_filters=payment_filters,
                              rates=[(10, 19, "1.0"), (20, 29, "2.0"), (40, 49, "4.0")])


def test_inner_campaign_counts_apple_pay_on_the_marketplace_through_the_master():
    rule = _rule(mercari_inner_payment=True)
    # channel says outside, but the merchant master maps this merchant ID to the marketplace
    outcome = rule.evaluate(stage=20, card_status=2, amount=3000, channel="outside", merchant=MARKET,
                            payment_method="apple_pay")
    assert outcome.points == 60 and outcome.rate == "2.0"
    assert rule.evaluate(stage=20, card_status=2, amount=3000, channel="outside", merchant=SHOP,
                         payment_method="mercard") == rules.CHANNEL


def test_outer_campaign_with_inverted_shop_list_and_excluded_category():
    rule = _rule(mercari_outer_payment=True, merchant={"shop_id": ["shop-88"], "invert": True},
                 excluded_categories=["e_money_charge"])
    kwargs = {"stage": 10, "card_status": 3, "amount": 1000, "channel": "outside", "payment_method": "mercard"}
    assert rule.evaluate(merchant=SHOP, **kwargs).points == 10
    assert rule.evaluate(merchant=EXCLUDED_SHOP, **kwargs) == rules.MERCHANT
    assert rule.evaluate(merchant=CHARGE, **kwargs) == rules.CATEGORY
    assert rule.evaluate(merchant=MARKET, **kwargs) == rules.CHANNEL


def test_user_level_reasons():
    rule = _rule()
    base = {"amount": 1000, "channel": "mercari", "merchant": MARKET, "payment_method": "mercard"}
    assert rule.evaluate(stage=None, card_status=2, **base) == rules.UNKNOWN_CUSTOMER
    assert rule.evaluate(stage=10, card_status=1, **base) == rules.CARD_STATUS
    assert rule.evaluate(stage=10, card_status=None, **base) == rules.CARD_STATUS
    assert rule.evaluate(stage=35, card_status=2, **base) == rules.STAGE  # no rate covers stage 35
    assert rule.evaluate(stage=10, card_status=2, paid_at=T1, **base) == rules.OUTSIDE_PERIOD


def test_payment_methods_filter():
    rule = _rule(payment_methods=["mercard", "id"])
    base = {"stage": 10, "card_status": 2, "amount": 1000, "channel": "mercari", "merchant": MARKET}
    assert rule.evaluate(payment_method="id", **base).points == 10
    assert rule.evaluate(payment_method="google_pay", **base) == rules.PAYMENT_METHOD
