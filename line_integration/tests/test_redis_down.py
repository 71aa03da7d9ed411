"""Redis down after a commit (issue 16 point 7): a notification and an unlink still succeed; what was not
started then is picked up by the `line.kick_senders` sweep."""

import pytest
from django.conf import settings

from line_integration.models import LineUser, OutboundMessage
from line_integration.services import line_notify, rich_menu_sync
from line_integration.services.sender import work_pending
from mercari_ops.common.tests.brokers import celery_broker, closed_port_url, limiter_redis

from .test_webhook import USER, link

pytestmark = pytest.mark.django_db


def test_line_notify_with_the_broker_down_queues_the_message_and_the_kick_will_send(
        link_customers, django_capture_on_commit_callbacks):
    link_customers(["c-1"])
    with celery_broker(closed_port_url()), django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert line_notify(customer_id="c-1", text="Your points arrived", idempotency_key="n-1") is True
    assert len(callbacks) == 1  # the sender's kick ran after commit and gave up without raising
    assert OutboundMessage.objects.get().status == "queued"
    assert work_pending()  # so line.kick_senders starts the senders on its next beat


def test_unlink_with_the_limiter_redis_down_answers_200_and_the_sweep_switches_the_menu(
        line_sandbox, post_webhook, api_client, django_capture_on_commit_callbacks):
    link(post_webhook, api_client, line_sandbox)
    assert line_sandbox.control("richmenus") == {USER: settings.LINE_RICH_MENU_LINKED}
    # the rich-menu change after commit takes a slot from the rate limiter, whose Redis is down
    with limiter_redis(closed_port_url()), django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/line/unlink", {"customer_id": "c-1"}, format="json")
    assert response.status_code == 200
    assert LineUser.objects.get(line_user_id=USER).rich_menu_id == settings.LINE_RICH_MENU_LINKED  # not yet
    # the sweep (line.kick_senders) switches it once Redis answers again
    assert rich_menu_sync()["unlinked"] == 1
    assert line_sandbox.control("richmenus") == {}
