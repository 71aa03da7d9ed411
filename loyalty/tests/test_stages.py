from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command

from loyalty import services
from loyalty.models import Customer, RecomputeJob, StageChange, StagePin, StageRuleVersion
from loyalty.selectors import customer_stage_get
from loyalty.services import activity_apply
from loyalty.tests.factories import RULES, event, publish_rules
from mercari_ops.common.errors import ValidationFailed

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def buy(customer_id, amount, at, n=1):
    activity_apply(events=[event(customer_id=customer_id, amount=amount, occurred_at=at) for _ in range(n)],
                   now=at if at <= NOW else NOW)


def test_nightly_job_downgrades_when_months_leave_the_window():
    publish_rules()
    # given Gold reached in December 2025 (window of 12 months)
    buy("c-1", 60000, datetime(2025, 12, 10, tzinfo=UTC))
    buy("c-2", 60000, datetime(2026, 10, 10, tzinfo=UTC))
    assert customer_stage_get(customer_id="c-1") == 30
    # when the nightly job runs while December 2025 is still in the window: nothing moves
    assert services.stages_downgrade_nightly(now=datetime(2026, 11, 30, 0, 5, tzinfo=UTC))["downgraded"] == 0
    # and on 1 December 2026 December 2025 leaves it
    result = services.stages_downgrade_nightly(now=datetime(2026, 12, 1, 0, 5, tzinfo=UTC))
    assert result == {"checked": 2, "downgraded": 1, "pins_expired": 0}
    assert customer_stage_get(customer_id="c-1") == 10 and customer_stage_get(customer_id="c-2") == 30
    change = StageChange.objects.filter(customer__customer_id="c-1", cause="downgrade").get()
    assert (change.from_stage, change.to_stage) == (30, 10)
    assert change.reason["trigger"] == "nightly" and change.reason["window"]["from"] == "2026-01"
    assert change.reason["lost"]["thresholds"] == [
        {"metric": "buy_amount", "threshold": 50000, "value": 0, "met": False},
        {"metric": "sell_count", "threshold": 10, "value": 0, "met": False},
    ]


def test_nightly_downgrade_after_a_reversal_lands_on_the_stage_still_met():
    publish_rules()
    at = datetime(2026, 11, 1, tzinfo=UTC)
    buy("c-1", 30000, at, n=2)
    assert customer_stage_get(customer_id="c-1") == 30
    buy("c-1", -30000, at)  # one purchase cancelled: 30000 over 1 net purchase
    services.stages_downgrade_nightly(now=NOW)
    assert customer_stage_get(customer_id="c-1") == 10  # Silver needs 2 purchases
    buy("c-1", 1, at)
    assert customer_stage_get(customer_id="c-1") == 20


def test_nightly_job_runs_from_beat_under_its_lock():
    from loyalty.tasks import nightly_downgrades

    assert nightly_downgrades.name == "loyalty.nightly_downgrades"
    assert set(nightly_downgrades()) == {"checked", "downgraded", "pins_expired"}


def test_pin_is_a_floor_with_reason_expiry_and_audit():
    publish_rules()
    buy("c-1", 20000, NOW, n=2)
    assert customer_stage_get(customer_id="c-1") == 20
    # when an operator pins a Gold floor for a month
    pin = services.stage_pin_set(customer_id="c-1", floor=30, reason="VIP complaint #123",
                                 expires_at=NOW + timedelta(days=30), by="alice", now=NOW)
    # then the effective stage is raised, the rules stage is untouched and the change is recorded
    customer = Customer.objects.get(customer_id="c-1")
    assert (customer.stage, customer.rules_stage, customer.pin_floor) == (30, 20, 30)
    change = StageChange.objects.get(cause="pin")
    assert (change.from_stage, change.to_stage, change.reason["by"], change.reason["pin_id"]) == (20, 30, "alice",
                                                                                                    pin.pk)
    # a floor below the earned stage changes nothing visible
    services.stage_pin_set(customer_id="c-1", floor=10, reason="lower", expires_at=NOW + timedelta(days=1),
                           by="bob", now=NOW)
    assert StagePin.objects.get(pk=pin.pk).revoked_by == "bob"  # replaced, kept for audit
    assert Customer.objects.get(customer_id="c-1").stage == 20
    assert StagePin.objects.count() == 2


def test_pin_holds_through_nightly_downgrade_and_expires():
    publish_rules()
    buy("c-1", 60000, datetime(2025, 12, 1, tzinfo=UTC))
    services.stage_pin_set(customer_id="c-1", floor=20, reason="goodwill", by="alice",
                           expires_at=datetime(2026, 12, 15, tzinfo=UTC), now=NOW)
    services.stages_downgrade_nightly(now=datetime(2026, 12, 2, tzinfo=UTC))
    customer = Customer.objects.get(customer_id="c-1")
    assert (customer.stage, customer.rules_stage) == (20, 10)
    downgrade = StageChange.objects.get(cause="downgrade")
    assert (downgrade.from_stage, downgrade.to_stage, downgrade.reason["pin_floor"]) == (30, 20, 20)
    # the selector stops honouring the pin the moment it expires, the job then records it
    assert services.pins_expire(now=datetime(2026, 12, 16, tzinfo=UTC)) == 1
    customer.refresh_from_db()
    assert (customer.stage, customer.pin_floor, customer.pin_expires_at) == (10, None, None)
    assert StageChange.objects.filter(cause="pin_expired", from_stage=20, to_stage=10).exists()


def test_selector_ignores_an_expired_pin_before_the_job_clears_it():
    publish_rules()
    past = datetime.now(UTC) - timedelta(minutes=1)
    services.stage_pin_set(customer_id="c-1", floor=40, reason="test", by="alice",
                           expires_at=past + timedelta(seconds=30), now=past)
    assert Customer.objects.get(customer_id="c-1").stage == 40
    assert customer_stage_get(customer_id="c-1") == 10


def test_pin_revoke_is_audited():
    publish_rules()
    pin = services.stage_pin_set(customer_id="c-1", floor=30, reason="r", by="alice",
                                 expires_at=datetime.now(UTC) + timedelta(days=1))
    services.stage_pin_revoke(pin_id=pin.pk, by="bob", reason="mistake")
    pin.refresh_from_db()
    assert (pin.revoked_by, pin.revoke_reason) == ("bob", "mistake") and pin.revoked_at
    assert customer_stage_get(customer_id="c-1") == 10
    assert StageChange.objects.filter(cause="pin_revoked", from_stage=30, to_stage=10).exists()


@pytest.mark.parametrize("kwargs, field", [
    ({"floor": 25}, "floor"),
    ({"reason": " "}, "reason"),
    ({"expires_at": NOW - timedelta(seconds=1)}, "expires_at"),
])
def test_bad_pins_are_refused(kwargs, field):
    publish_rules()
    args = {"customer_id": "c-1", "floor": 30, "reason": "r", "expires_at": NOW + timedelta(days=1), "by": "a",
            "now": NOW, **kwargs}
    with pytest.raises(ValidationFailed) as caught:
        services.stage_pin_set(**args)
    assert caught.value.field == field


def test_new_rules_version_keeps_before_after_and_recomputes_everyone(django_capture_on_commit_callbacks):
    publish_rules()
    buy("c-1", 20000, NOW, n=2)           # Silver under v1
    buy("c-2", 60000, NOW)                # Gold under v1
    buy("c-3", 100, NOW)                  # Regular
    stricter = {**RULES, "stages": [RULES["stages"][0],
                                    {**RULES["stages"][1], "thresholds": {"buy_amount": 5000}},
                                    {**RULES["stages"][2], "thresholds": {"buy_amount": 100000}},
                                    RULES["stages"][3]]}
    # when a marketer publishes v2 (the recomputation runs in the background, after commit)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        version = services.rules_version_publish(definition=stricter, by="mika", note="Gold harder")
    assert len(callbacks) == 1
    assert (version.version, version.created_by) == (2, "mika")
    assert version.previous_definition == StageRuleVersion.objects.get(version=1).definition
    job = RecomputeJob.objects.get(rule_version=version)
    assert (job.status, job.done, job.total) == ("queued", 0, 3)
    # then the job applies v2 in both directions, with progress stored per batch
    assert services.recompute_job_run(job_id=job.pk, batch_size=2) == "done"
    job.refresh_from_db()
    assert (job.status, job.done, job.total, job.changed) == ("done", 3, 3, 1)
    assert dict(Customer.objects.values_list("customer_id", "stage")) == {"c-1": 20, "c-2": 20, "c-3": 10}
    change = StageChange.objects.get(cause="rules")
    assert (change.from_stage, change.to_stage, change.rule_version) == (30, 20, 2)


def test_an_older_job_is_superseded_by_a_newer_version():
    publish_rules()
    old_job = RecomputeJob.objects.get()
    services.rules_version_publish(definition={**RULES, "window_months": 6}, by="mika")
    assert services.recompute_job_run(job_id=old_job.pk) == "superseded"
    with pytest.raises(ValidationFailed):
        services.rules_version_publish(definition={**RULES, "window_months": 6}, by="mika")  # no change


def test_a_lost_job_is_resumed_from_its_cursor():
    for i in range(5):
        buy(f"c-{i}", 100, NOW)
    publish_rules()
    job = RecomputeJob.objects.get()
    RecomputeJob.objects.filter(pk=job.pk).update(status="running", cursor="c-2", done=3,
                                                  heartbeat_at=datetime.now(UTC) - timedelta(minutes=10))
    assert services.recompute_job_resume_stale() == "done"
    job.refresh_from_db()
    assert (job.done, job.status) == (5, "done")
    assert services.recompute_job_resume_stale() == "idle"


def test_demo_seed_is_idempotent(settings):
    from io import StringIO

    from loyalty import demo

    first = demo.seed(stdout=StringIO(), customers=60)
    counts = (Customer.objects.count(), StageChange.objects.count(), StageRuleVersion.objects.count())
    second = demo.seed(stdout=StringIO(), customers=60)
    assert counts == (Customer.objects.count(), StageChange.objects.count(), StageRuleVersion.objects.count())
    assert "60 customers" in first and "added nothing" in second
    assert Customer.objects.filter(stage__gt=10).exists()


def test_seed_demo_command_runs(settings):
    call_command("seed_demo", stdout=__import__("io").StringIO())
