"""History's metrics: event-to-visible latency, events waiting for a parent, pending repayments."""

from datetime import timedelta

import pytest
from django.utils import timezone

from history.models import RepaymentRequest
from history.services import repayment_request
from mercari_ops.common.tests.metrics_text import scrape, value

from .factories import card_tree

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


def test_children_wait_then_show_and_each_visible_event_is_timed(push, django_capture_on_commit_callbacks):
    purchase, transaction, bill, repayment = card_tree(1)
    before = scrape()
    # when: the children come first
    with django_capture_on_commit_callbacks(execute=True):
        for event in (bill, transaction):
            assert push(TOPIC, event).status_code == 204
    waiting = scrape()
    # and then their parent
    with django_capture_on_commit_callbacks(execute=True):
        assert push(TOPIC, purchase).status_code == 204
    after = scrape()
    # then
    assert value(waiting, "mercari_ops_history_events_waiting_for_parent") == 2
    assert value(after, "mercari_ops_history_events_waiting_for_parent") == 0
    count = "mercari_ops_history_event_to_visible_seconds_count"
    assert value(waiting, count) == value(before, count)  # nothing shown yet
    assert value(after, count) - value(before, count) == 3
    # the events are from October 2026: they became visible long after they happened
    slow = "mercari_ops_history_event_to_visible_seconds_bucket"
    assert value(after, slow, le="3600.0") - value(before, slow, le="3600.0") == 0


def test_pending_repayments_and_the_oldest_age(push):
    for event in card_tree(2, repaid=False):
        assert push(TOPIC, event).status_code == 204
    repayment_request(payment_id="tx-2", idempotency_key="metrics-key")
    RepaymentRequest.objects.update(created_at=timezone.now() - timedelta(minutes=3))
    text = scrape()
    assert value(text, "mercari_ops_history_repayment_requests_pending") == 1
    assert 180 <= value(text, "mercari_ops_history_repayment_pending_oldest_age_seconds") < 240
