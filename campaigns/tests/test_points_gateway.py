"""Points gateway against a real local HTTP server that fails: retried later, never granted twice."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import CampaignBudget, CampaignReward, PointsGrant
from campaigns.services import bills_settle, grants_deliver
from campaigns.tests.factories import bill_event, line
from campaigns.tests.points_server import PointsServer

pytestmark = pytest.mark.django_db


@pytest.fixture
def server(settings):
    with PointsServer() as running:
        settings.POINTS_API_URL = running.url
        settings.POINTS_API_TIMEOUT_SECONDS = 2
        yield running


@pytest.fixture
def settled(campaigns, customer, record_bill):
    customer("c-1", stage=10)
    customer("c-2", stage=20)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)])),
                           record_bill(bill_event("c-2", [line("p-2", 3000)]))])
    return PointsGrant.objects.order_by("pk")


def _later(minutes=90):
    return timezone.now() + timedelta(minutes=minutes)


def test_gateway_down_pauses_delivery_without_charging_attempts_and_grants_once(server, settled, settings):
    settings.CAMPAIGNS_POINTS_BREAKER_FAILURES = 2
    server.mode = "down"
    now = timezone.now()
    counts = grants_deliver(now=now)
    assert (counts["sent"], counts["retry"], counts["not_charged"]) == (0, 2, 2)
    assert len(server.requests) == 2  # then the breaker opened instead of hammering a down service
    grant = settled.first()
    assert grant.status == "pending" and grant.attempts == 0  # the outage is charged to no grant
    assert "503" in grant.last_error
    assert grants_deliver(now=now + timedelta(seconds=1))["paused"] == 1 and len(server.requests) == 2
    server.mode = "ok"
    assert grants_deliver(now=_later())["sent"] == 2
    assert grants_deliver(now=_later(600))["sent"] == 0
    assert server.points_of("c-1") == 30 and server.points_of("c-2") == 60
    assert {key for key, _ in server.requests} == set(settled.values_list("idempotency_key", flat=True))


def test_lost_answer_is_retried_with_the_same_key_and_granted_once(server, settled):
    server.mode = "lose_answer"
    assert grants_deliver()["retry"] == 2
    assert server.points_of("c-1") == 30  # the service did grant; we did not hear it
    server.mode = "ok"
    assert grants_deliver(now=_later())["sent"] == 2  # 409 "already granted with this key" is success
    assert server.points_of("c-1") == 30 and len(server.granted) == 2
    keys = [key for key, _ in server.requests]
    assert len(keys) == 4 and keys[2:] == keys[:2]  # each grant retried with its original key
    assert set(settled.values_list("status", flat=True)) == {"sent"}


def test_unreachable_service_is_retried(settings, settled):
    with PointsServer() as gone:
        url = gone.url
    settings.POINTS_API_URL = url  # nothing listens there any more
    settings.POINTS_API_TIMEOUT_SECONDS = 1
    counts = grants_deliver()
    assert counts["retry"] == 2 and "unreachable" in settled.first().last_error


def test_rejected_grant_reverses_its_rewards_and_releases_the_cap(server, campaigns, customer, record_bill):
    _, outer = campaigns
    customer("c-3", stage=10)
    bills_settle(bill_ids=[record_bill(bill_event("c-3", [line("p-9", 10_000, "m-77", channel="outside")]))])
    assert CampaignBudget.objects.get(campaign=outer, customer_id="c-3").points == 50
    server.mode = "reject"
    assert grants_deliver()["rejected"] == 1
    assert PointsGrant.objects.get().status == "rejected"
    assert CampaignReward.objects.get().reversed_at is not None
    assert CampaignBudget.objects.get(campaign=outer, customer_id="c-3").points == 0
    assert grants_deliver(now=_later())["sent"] == 0
