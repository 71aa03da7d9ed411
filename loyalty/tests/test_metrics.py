"""Loyalty's metrics: events applied and stage moves counted once committed; recomputation progress."""

from datetime import UTC, datetime

import pytest

from loyalty.models import RecomputeJob
from loyalty.services import activity_apply, stages_downgrade_nightly
from loyalty.tests.factories import event, publish_rules
from mercari_ops.common.tests.metrics_text import scrape, value

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 10, tzinfo=UTC)


def test_events_applied_and_stage_moves_up_and_down_are_counted(django_capture_on_commit_callbacks):
    publish_rules()
    before = scrape()
    # when: Gold reached by one purchase (two events), then the window leaves it behind a year later
    with django_capture_on_commit_callbacks(execute=True):
        activity_apply(events=[event(customer_id="m-1", amount=30000, occurred_at=AT) for _ in range(2)], now=AT)
    with django_capture_on_commit_callbacks(execute=True):
        stages_downgrade_nightly(now=datetime(2027, 11, 2, tzinfo=UTC))
    after = scrape()
    # then
    assert value(after, "mercari_ops_loyalty_events_applied_total") - \
        value(before, "mercari_ops_loyalty_events_applied_total") == 2
    changes = "mercari_ops_loyalty_stage_changes_total"
    assert value(after, changes, direction="up") - value(before, changes, direction="up") == 1
    assert value(after, changes, direction="down") - value(before, changes, direction="down") == 1


def test_nothing_is_counted_for_a_transaction_that_rolls_back(django_capture_on_commit_callbacks):
    from django.db import transaction

    publish_rules()
    before = scrape()
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError), transaction.atomic():
        activity_apply(events=[event(customer_id="m-2", amount=30000, occurred_at=AT)], now=AT)
        raise RuntimeError("the group fails")
    name = "mercari_ops_loyalty_events_applied_total"
    assert value(scrape(), name) == value(before, name)


def test_recomputation_progress_is_a_gauge():
    publish_rules()
    job = RecomputeJob.objects.get()
    RecomputeJob.objects.filter(pk=job.pk).update(status=RecomputeJob.Status.RUNNING, done=25, total=100)
    text = scrape()
    assert value(text, "mercari_ops_loyalty_recompute_jobs", status="running") == 1
    assert value(text, "mercari_ops_loyalty_recompute_progress_ratio") == 0.25
    RecomputeJob.objects.update(status=RecomputeJob.Status.DONE)
    assert value(scrape(), "mercari_ops_loyalty_recompute_progress_ratio") == 1
