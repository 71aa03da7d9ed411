"""LINE's metrics: calls by kind and status, 429s, limiter slots, webhook events, Braze answers, backlog."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from line_integration.clients import LineClient, LineRateLimited, LineTimeout
from line_integration.models import OutboundMessage
from line_integration.tests.conftest import event, webhook_body
from mercari_ops.common.tests.metrics_text import scrape, value

pytestmark = pytest.mark.django_db

USER = "U" + "d" * 32
TEXT = [{"type": "text", "text": "hello"}]


def test_calls_are_counted_by_kind_and_status_and_429s_on_their_own(line_sandbox):
    client = LineClient(base_url=line_sandbox.url, read_timeout=0.5)
    before = scrape()
    client.push(to=USER, messages=TEXT, retry_key=str(uuid.uuid4()))
    line_sandbox.control("faults", {"next": [429]})
    with pytest.raises(LineRateLimited):
        client.multicast(to=[USER, "U" + "e" * 32], messages=TEXT, retry_key=str(uuid.uuid4()))
    with pytest.raises(LineTimeout):
        LineClient(base_url="http://127.0.0.1:9", connect_timeout=0.5).push(to=USER, messages=TEXT,
                                                                           retry_key=str(uuid.uuid4()))
    after = scrape()

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("mercari_ops_line_requests_total", kind="push", status="200") == 1
    assert moved("mercari_ops_line_requests_total", kind="multicast", status="429") == 1
    assert moved("mercari_ops_line_requests_total", kind="push", status="error") == 1
    assert moved("mercari_ops_line_rate_limited_total", kind="multicast") == 1
    assert moved("mercari_ops_line_rate_limited_total", kind="push") == 0


def test_a_braze_burst_is_counted_and_shows_as_backlog(braze, text_template, link_customers):
    link_customers([f"c-{n}" for n in range(5)])
    before = scrape()
    for n in range(5):
        body = {"user_id": f"c-{n}", "dispatch_id": "burst-1", "template": "saved_search_new_items",
                "params": {"search_id": "s"}}
        assert braze(body).status_code == 202
    assert braze({"user_id": "c-0"}).status_code == 400
    OutboundMessage.objects.filter(dispatch_id="burst-1", user_id="c-0").update(
        created_at=timezone.now() - timedelta(minutes=7))
    after = scrape()
    name = "mercari_ops_line_braze_webhooks_total"
    assert value(after, name, outcome="queued") - value(before, name, outcome="queued") == 5
    assert value(after, name, outcome="refused") - value(before, name, outcome="refused") == 1
    assert value(after, "mercari_ops_line_outbound_messages", status="queued") == 5
    assert value(after, "mercari_ops_line_outbound_messages", status="planned") == 0
    assert 420 <= value(after, "mercari_ops_line_outbound_oldest_queued_age_seconds") < 480


def test_sending_counts_the_limiters_slots(line_sandbox, text_template, link_customers, drain, braze):
    linked = link_customers([f"c-{n}" for n in range(3)])
    for customer in linked:
        braze({"user_id": customer, "dispatch_id": f"d-{customer}", "template": "saved_search_new_items",
               "params": {"search_id": customer}})
    before = scrape()
    drain()
    after = scrape()
    slots = "mercari_ops_line_limiter_slots_total"
    assert value(after, slots, kind="push") - value(before, slots, kind="push") >= 3
    assert value(after, "mercari_ops_line_outbound_messages", status="queued") == 0
    assert value(after, "mercari_ops_line_limiter_limit_per_second", kind="push") == 2000


def test_webhook_events_are_counted_by_type(line_sandbox, post_webhook):
    before = scrape()
    unknown_type = event("videoPlayComplete", USER, replyToken="r" * 32, videoPlayComplete={"trackingId": "t"})
    body = webhook_body(event("follow", USER), event("unfollow", USER), unknown_type)
    assert post_webhook(body).status_code == 200
    after = scrape()
    name = "mercari_ops_line_webhook_events_total"
    for kind, expected in (("follow", 1), ("unfollow", 1), ("other", 1)):
        assert value(after, name, type=kind) - value(before, name, type=kind) == expected
