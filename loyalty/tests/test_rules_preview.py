"""stage_rules_preview: the moves a rules version would cause, counted by hand on a small population."""

from datetime import UTC, date, datetime, timedelta

import pytest

from loyalty.models import Customer, MonthlyTotal, StageChange
from loyalty.services.rules_preview import stage_rules_preview
from loyalty.tests.factories import RULES, publish_rules
from mercari_ops.common.errors import ValidationFailed

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def customer(customer_id, stage, *, buy=(0, 0), sell=(0, 0), month=date(2026, 10, 1), pin=None):
    row = Customer.objects.create(customer_id=customer_id, stage=max(stage, pin or 0), rules_stage=stage,
                                  pin_floor=pin, pin_expires_at=NOW + timedelta(days=30) if pin else None)
    for kind, (amount, count) in (("buy", buy), ("sell", sell)):
        if count:
            MonthlyTotal.objects.create(customer=row, kind=kind, month=month, amount=amount, count=count)
    return row


def test_preview_counts_moves_per_stage_without_writing_anything():
    # given the factory rules in force and five customers at the stages those rules gave them
    publish_rules()
    customer("c-1", 10)                                   # nothing bought: stays Regular
    customer("c-2", 20, buy=(12000, 2))                   # Silver under the current rules
    customer("c-3", 20, buy=(30000, 3))                   # Silver
    customer("c-4", 30, buy=(60000, 1))                   # Gold (any: buy_amount)
    customer("c-5", 20, buy=(12000, 2), pin=30)           # Silver pinned to Gold: sees 30
    customer("c-6", 30, buy=(60000, 1), month=date(2025, 1, 1))  # old totals, outside any 12-month window
    # when Silver needs 25,000 yen and Gold 2 purchases of 50,000 (all)
    proposed = {
        "window_months": 12,
        "stages": [
            {"stage": 10, "name": "Regular", "thresholds": {}},
            {"stage": 20, "name": "Silver", "thresholds": {"buy_amount": 25000}},
            {"stage": 30, "name": "Gold", "combine": "all", "thresholds": {"buy_amount": 50000, "buy_count": 2}},
        ],
    }
    stages_before = dict(Customer.objects.values_list("customer_id", "stage"))
    preview = stage_rules_preview(definition=proposed, now=NOW)
    # then by hand: c-2 20->10, c-3 stays 20, c-4 30->20, c-5 stays 30 (pin), c-6 30->10, c-1 stays 10
    assert preview["customers"] == 6
    assert preview["moves"] == [
        {"from_stage": 20, "to_stage": 10, "customers": 1},
        {"from_stage": 30, "to_stage": 10, "customers": 1},
        {"from_stage": 30, "to_stage": 20, "customers": 1},
    ]
    assert (preview["up"], preview["down"], preview["unchanged"]) == (0, 3, 3)
    assert preview["per_stage_before"] == {10: 1, 20: 2, 30: 3}
    assert preview["per_stage_after"] == {10: 3, 20: 2, 30: 1}
    assert preview["stage_names"][20] == "Silver" and preview["stage_names"][40] == "Platinum"
    assert preview["window_from"] == "2025-12"
    # and nothing was written
    assert dict(Customer.objects.values_list("customer_id", "stage")) == stages_before
    assert not StageChange.objects.exists()


def test_preview_counts_upgrades_and_reads_in_batches():
    publish_rules()
    for n in range(5):
        customer(f"c-{n}", 10, sell=(5000, 10))  # 10 sales: Gold under the factory rules, but not yet restaged
    preview = stage_rules_preview(definition=RULES, now=NOW, batch_size=2)
    assert preview["moves"] == [{"from_stage": 10, "to_stage": 30, "customers": 5}]
    assert (preview["up"], preview["down"], preview["unchanged"]) == (5, 0, 0)


def test_preview_refuses_an_invalid_definition():
    with pytest.raises(ValidationFailed) as raised:
        stage_rules_preview(definition={"window_months": 0, "stages": []})
    assert raised.value.field == "window_months"
