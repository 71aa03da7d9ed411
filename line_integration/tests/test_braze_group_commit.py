"""Braze webhooks with group commit: concurrent requests share one INSERT, each answered as on its own."""

import json
import threading

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from line_integration.models import OutboundMessage
from line_integration.services.braze import braze_enqueue_group
from mercari_ops.common.groupcommit import group_committer, group_committers_stop

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _committers_stopped():
    yield
    group_committers_stop()


def message(user_id: str, dispatch_id: str = "d-1") -> dict:
    return {"user_id": user_id, "dispatch_id": dispatch_id, "campaign_id": "braze-cmp-9",
            "template": "saved_search_new_items", "params": {"search_id": "s-5"}}


def test_one_group_records_each_message_once_and_answers_each_as_alone(text_template, link_customers):
    link_customers(["c-1", "c-2"])
    # given: linked, not linked, and a repeat of c-1 inside the group; c-2 was already accepted before
    assert braze_enqueue_group([message("c-2")]) == [{"status": "queued"}]
    answers = braze_enqueue_group([message("c-1"), message("c-9"), message("c-1"), message("c-2")])
    # then
    assert answers == [{"status": "queued"}, {"status": "skipped", "reason": "not_linked"},
                       {"status": "queued"}, {"status": "queued"}]
    rows = OutboundMessage.objects.order_by("user_id")
    assert list(rows.values_list("user_id", "status", "reason")) == [
        ("c-1", "queued", ""), ("c-2", "queued", ""), ("c-9", "skipped", "not_linked")]
    assert rows.get(user_id="c-1").params == {"search_id": "s-5"}


def test_concurrent_webhooks_through_the_endpoint_with_group_commit(settings, text_template, link_customers):
    settings.GROUP_COMMIT = True
    linked = [f"c-{i}" for i in range(20)]
    link_customers(linked)
    bodies = [message(c, "d-burst") for c in linked] + [message("c-404", "d-burst")] + [message("c-3", "d-burst")]
    answers: list = [None] * len(bodies)

    def send(index: int) -> None:
        response = Client().post("/line/braze/webhook", data=json.dumps(bodies[index]),
                                 content_type="application/json",
                                 HTTP_AUTHORIZATION=f"Bearer {django_settings.BRAZE_WEBHOOK_TOKEN}")
        answers[index] = (response.status_code, response.json())
        connection.close()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert answers[:20] == [(202, {"status": "queued"})] * 20
    assert answers[20] == (202, {"status": "skipped", "reason": "not_linked"})
    assert answers[21] == (202, {"status": "queued"})  # the repeat of c-3
    assert OutboundMessage.objects.filter(dispatch_id="d-burst", status="queued").count() == 20
    assert OutboundMessage.objects.filter(dispatch_id="d-burst").count() == 21
    committer = group_committer("braze", braze_enqueue_group, max_group=1)  # the one the endpoint used
    assert committer.items == 22 and committer.groups <= 22


def test_bad_bodies_are_400_before_any_group(client, settings, text_template):
    settings.GROUP_COMMIT = True
    auth = f"Bearer {django_settings.BRAZE_WEBHOOK_TOKEN}"
    missing = client.post("/line/braze/webhook", data=json.dumps({"dispatch_id": "d"}),
                          content_type="application/json", HTTP_AUTHORIZATION=auth)
    unknown = client.post("/line/braze/webhook", data=json.dumps({**message("c-1"), "template": "nope"}),
                          content_type="application/json", HTTP_AUTHORIZATION=auth)
    assert (missing.status_code, missing.json()["field"]) == (400, "user_id")
    assert (unknown.status_code, unknown.json()["field"]) == (400, "template")
    assert not OutboundMessage.objects.exists()
