import json

import pytest
from django.db import connection

from conftest import push_body
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.registry import PermanentEventError, Waiting
from mercari_ops.inbox.services import inbox_release_waiting

pytestmark = pytest.mark.django_db


def test_wrong_token_is_401_and_stores_nothing(push, test_topic):
    name, calls, _ = test_topic
    response = push(name, {"event_id": "e-1"}, token="wrong")
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
    assert not InboxEvent.objects.exists() and not DeadLetter.objects.exists() and not calls


def test_missing_token_is_401(client, test_topic):
    response = client.post(f"/pubsub/push/{test_topic[0]}", data=push_body({"event_id": "e"}),
                           content_type="application/json")
    assert response.status_code == 401


def test_event_is_processed_once_and_duplicate_is_204(push, test_topic):
    name, calls, _ = test_topic
    first = push(name, {"event_id": "e-1", "n": 3})
    second = push(name, {"event_id": "e-1", "n": 3})
    assert (first.status_code, second.status_code) == (204, 204)
    assert calls == [{"event_id": "e-1", "n": 3}]
    row = InboxEvent.objects.get(topic=name, event_id="e-1")
    assert (row.status, row.attempts) == ("processed", 1)


@pytest.mark.parametrize(
    "body, field",
    [
        (b"not json", "body"),
        (json.dumps({"message": [], "subscription": "projects/p/subscriptions/s"}).encode(), "message"),
        (json.dumps({"message": {}, "subscription": "projects/p/subscriptions/s"}).encode(), "message.data"),
        (json.dumps({"message": {"data": "%%%not-base64"}, "subscription": "s"}).encode(), "message.data"),
        (push_body(b"{broken json"), "message.data"),
        (push_body({"n": 1}), "event_id"),
        (push_body({"event_id": "e-2", "n": "seven"}), "n"),
    ],
)
def test_bad_bodies_are_400_naming_the_field_and_kept_once(push, test_topic, body, field):
    name, calls, _ = test_topic
    for _ in range(5):
        response = push(name, body=body)
        assert response.status_code == 400
        assert response.json()["field"] == field
        assert response.json()["error"]
    letter = DeadLetter.objects.get()
    assert letter.times_received == 5
    assert letter.raw_body == body.decode()
    assert letter.field == field
    assert not calls and not InboxEvent.objects.exists()


def test_unknown_topic_is_400_and_kept(push):
    response = push("no-such-topic", {"event_id": "e-1"})
    assert response.status_code == 400
    assert response.json() == {"error": "unknown topic 'no-such-topic'", "field": "topic"}
    assert DeadLetter.objects.get().topic == "no-such-topic"


def test_permanent_handler_error_is_400_dead_row_and_redelivery_acks(push, test_topic):
    name, _, register = test_topic

    def reject(event):
        raise PermanentEventError("state cannot go from repaid to billed", "type")

    register(reject)
    response = push(name, {"event_id": "e-9"})
    assert response.status_code == 400
    assert response.json() == {"error": "state cannot go from repaid to billed", "field": "type"}
    row = InboxEvent.objects.get(event_id="e-9")
    assert (row.status, row.error_field, row.payload) == ("dead", "type", {"event_id": "e-9"})
    assert push(name, {"event_id": "e-9"}).status_code == 204  # recorded once; not dead-lettered twice
    assert InboxEvent.objects.filter(event_id="e-9").count() == 1


def test_waiting_event_is_acked_and_released_in_order(push, test_topic):
    name, calls, register = test_topic
    seen: list[str] = []

    def needs_parent(event):
        if event["event_id"] != "parent" and not seen:
            return Waiting(on="parent", reason="parent not yet applied")
        seen.append(event["event_id"])
        if event["event_id"] == "parent":
            inbox_release_waiting(topic_name=name, key="parent")
        return None

    register(needs_parent)
    # as strings ".5Z" < "Z", so only a time-aware sort puts child-early first
    assert push(name, {"event_id": "child-late", "occurred_at": "2026-10-01T00:00:00.5Z"}).status_code == 204
    assert push(name, {"event_id": "child-early", "occurred_at": "2026-10-01T00:00:00Z"}).status_code == 204
    assert set(InboxEvent.objects.values_list("status", flat=True)) == {"waiting"}
    assert push(name, {"event_id": "parent"}).status_code == 204
    assert seen == ["parent", "child-early", "child-late"]
    rows = {r.event_id: (r.status, r.attempts) for r in InboxEvent.objects.all()}
    assert rows == {"parent": ("processed", 1), "child-early": ("processed", 1), "child-late": ("processed", 1)}


@pytest.mark.django_db(transaction=True)
def test_database_down_answers_503(push, test_topic):
    name, calls, _ = test_topic
    saved = dict(connection.settings_dict)
    connection.close()
    connection.settings_dict["PORT"] = "1"  # nothing listens there
    try:
        response = push(name, {"event_id": "e-db"})
        assert response.status_code == 503
        assert "database" in response.json()["error"]
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)
    assert not calls
    with pytest.raises(InboxEvent.DoesNotExist):
        InboxEvent.objects.get(event_id="e-db")


def test_topic_without_payload_keeps_only_the_dedupe_key(push, test_topic):
    name, calls, register = test_topic
    register(keep_payload=False)
    assert push(name, {"event_id": "private-1", "n": 1}).status_code == 204
    assert InboxEvent.objects.filter(event_id="private-1", payload__isnull=True).exists()
    assert calls == [{"event_id": "private-1", "n": 1}]
