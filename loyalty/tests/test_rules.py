from datetime import UTC, date, datetime

import pytest

from loyalty.rules import (
    definition_validate,
    missing_for,
    ruleset_build,
    stage_evaluate,
    window_start,
)
from loyalty.tests.factories import RULES
from mercari_ops.common.errors import ValidationFailed

RULESET = ruleset_build(1, definition_validate(RULES))


def metrics(**values):
    base = dict.fromkeys(["buy_amount", "buy_count", "sell_amount", "sell_count", "pay_amount", "pay_count"], 0)
    return {**base, **values}


@pytest.mark.parametrize("values, stage", [
    ({}, 10),
    ({"buy_amount": 10000, "buy_count": 1}, 10),          # all: one of two thresholds is not enough
    ({"buy_amount": 10000, "buy_count": 2}, 20),          # all: both met
    ({"sell_count": 10}, 30),                              # any: one threshold suffices for Gold
    ({"buy_amount": 50000, "buy_count": 1}, 30),           # Gold met (any), Silver not (all): highest met wins
    ({"buy_amount": 100000, "buy_count": 5, "sell_amount": 50000, "pay_amount": 9999}, 30),
    ({"buy_amount": 100000, "buy_count": 5, "sell_amount": 50000, "pay_amount": 10000}, 40),
    ({"buy_amount": -500, "buy_count": -1}, 10),
])
def test_highest_stage_whose_thresholds_combine_as_documented(values, stage):
    assert stage_evaluate(RULESET, metrics(**values)).stage == stage


def test_missing_lists_every_unmet_threshold():
    gold = RULESET.rule(30)
    assert missing_for(gold, metrics(buy_amount=20000, sell_count=3)) == {"buy_amount": 30000, "sell_count": 7}
    assert missing_for(RULESET.rule(20), metrics(buy_amount=20000)) == {"buy_count": 2}


@pytest.mark.parametrize("now, months, start", [
    (datetime(2026, 11, 22, tzinfo=UTC), 12, date(2025, 12, 1)),
    (datetime(2026, 1, 1, 3, tzinfo=UTC), 1, date(2026, 1, 1)),
    (datetime(2026, 1, 31, 3, tzinfo=UTC), 2, date(2025, 12, 1)),
    (datetime(2026, 3, 15, tzinfo=UTC), 27, date(2024, 1, 1)),
    (datetime(2026, 1, 31, 15, tzinfo=UTC), 2, date(2026, 1, 1)),  # 1 February 00:00 in Japan
    (datetime(2025, 12, 31, 14, 59, 59, tzinfo=UTC), 1, date(2025, 12, 1)),  # 23:59:59 on 31 December in Japan
])
def test_window_is_business_months_including_the_current_one(now, months, start):
    assert window_start(now, months) == start


def test_window_months_follow_the_business_calendar(settings):
    settings.BUSINESS_TIME_ZONE = "UTC"
    assert window_start(datetime(2026, 1, 31, 15, tzinfo=UTC), 2) == date(2025, 12, 1)


@pytest.mark.parametrize("change, field", [
    ({"window_months": 0}, "window_months"),
    ({"window_months": "12"}, "window_months"),
    ({"stages": []}, "stages"),
    ({"extra": 1}, "extra"),
    ({"stages": [{"stage": 10, "name": "R", "thresholds": {"buy_amount": 1}}]}, "stages.0.thresholds"),
    ({"stages": [{"stage": 10, "name": "R"}, {"stage": 10, "name": "S", "thresholds": {"buy_count": 1}}]},
     "stages.1.stage"),
    ({"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S", "thresholds": {"refunds": 1}}]},
     "stages.1.thresholds.refunds"),
    ({"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S", "thresholds": {"buy_count": 0}}]},
     "stages.1.thresholds.buy_count"),
    ({"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S", "combine": "some",
                                               "thresholds": {"buy_count": 1}}]}, "stages.1.combine"),
    ({"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S"}]}, "stages.1.thresholds"),
    ({"stages": [{"stage": 10, "name": ""}]}, "stages.0.name"),
])
def test_invalid_rules_name_the_field(change, field):
    with pytest.raises(ValidationFailed) as caught:
        definition_validate({**RULES, **change})
    assert caught.value.field == field
