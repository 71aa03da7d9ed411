"""Campaigns' metrics: a settlement moves bills and grants and counts the points; estimate latency."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Bill, PointsServiceBreaker
from campaigns.services import bills_settle, grants_deliver_all
from campaigns.tests.factories import bill_event, line
from mercari_ops.common.tests.metrics_text import scrape, value

pytestmark = pytest.mark.django_db


def test_a_settlement_moves_bills_and_grants_and_counts_the_points(campaigns, customer, record_bill):
    # given: two pending bills, one received ten minutes ago
    customer("c-1", stage=10)
    first = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    second = record_bill(bill_event("c-1", [line("p-2", 2000)]))
    Bill.objects.filter(pk=first).update(received_at=timezone.now() - timedelta(minutes=10))
    before = scrape()
    assert value(before, "mercari_ops_campaigns_bills", status="pending") == 2
    assert 600 <= value(before, "mercari_ops_campaigns_bills_pending_oldest_age_seconds") < 660
    # when: they are settled (two pending grants), then the grants are delivered
    bills_settle(bill_ids=[first, second])
    settled = scrape()
    grants_deliver_all()
    after = scrape()
    # then
    assert value(settled, "mercari_ops_campaigns_bills", status="pending") == 0
    assert value(settled, "mercari_ops_campaigns_bills", status="settled") == 2
    assert value(settled, "mercari_ops_campaigns_bills_pending_oldest_age_seconds") == 0
    assert value(settled, "mercari_ops_campaigns_grants", status="pending") == 2
    assert value(after, "mercari_ops_campaigns_grants", status="pending") == 0
    assert value(after, "mercari_ops_campaigns_grants", status="delivered") == 2
    assert value(after, "mercari_ops_campaigns_grants", status="failed") == 0
    granted = "mercari_ops_campaigns_points_granted_total"
    assert value(after, granted) - value(before, granted) == 30 + 20  # 1.0% at stage 10
    requests = "mercari_ops_campaigns_points_requests_total"
    assert value(after, requests, outcome="granted") - value(before, requests, outcome="granted") == 2


def test_an_overdue_grant_and_an_open_breaker_show(campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    from campaigns.models import PointsGrant

    PointsGrant.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=5))
    PointsServiceBreaker.objects.update_or_create(name="points", defaults={
        "open_until": timezone.now() + timedelta(seconds=30)})
    text = scrape()
    assert 300 <= value(text, "mercari_ops_campaigns_grants_overdue_seconds") < 360
    assert value(text, "mercari_ops_campaigns_points_breaker_open") == 1


def test_the_estimate_is_timed(api_client, merchants, customer):
    customer("c-1", stage=10)
    before = scrape()
    for _ in range(3):
        response = api_client.post("/api/campaigns/estimate", {"customer_id": "c-1", "amount": 3000,
                                                               "channel": "mercari"}, format="json")
        assert response.status_code == 200
    count = "mercari_ops_campaigns_estimate_duration_seconds_count"
    assert value(scrape(), count) - value(before, count) == 3
