"""Pushes as Google sends them besides the standard envelope: unwrapped bodies, and messages up to 10 MB.

Through the project's real WSGI application (the machine handler gunicorn runs), not the test client.
"""

import base64
import hashlib
import json

import pytest
from django.conf import settings

from conftest import push_body
from mercari_ops.common.tests.wsgi_client import wsgi_call
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.services import OVERSIZED_BODY_KEPT_BYTES

pytestmark = pytest.mark.django_db

MB = 1024 * 1024


def _push(topic: str, body: bytes, **headers) -> tuple[int, dict | None]:
    status, _, content = wsgi_call(f"/pubsub/push/{topic}", method="POST", body=body,
                                   headers={"Authorization": f"Bearer {settings.PUBSUB_PUSH_TOKEN}", **headers})
    return status, json.loads(content) if content else None


def test_an_unwrapped_push_without_metadata_is_recorded(test_topic):
    name, calls, _ = test_topic
    assert _push(name, json.dumps({"event_id": "u-1", "n": 2}).encode()) == (204, None)
    assert calls == [{"event_id": "u-1", "n": 2}]
    row = InboxEvent.objects.get(topic=name, event_id="u-1")
    assert (row.status, row.message_id) == ("processed", "")


def test_an_unwrapped_push_with_metadata_headers_keeps_the_message_id(test_topic):
    name, calls, _ = test_topic
    # as Google writes metadata: x-goog-pubsub-* for the message's own fields, attributes as plain headers
    metadata = {"x-goog-pubsub-message-id": "2070443601311540",
                "x-goog-pubsub-publish-time": "2026-11-01T10:00:00.123Z",
                "x-goog-pubsub-subscription-name": "projects/p/subscriptions/s",
                "x-goog-pubsub-ordering-key": "c-1", "origin-region": "jp"}
    assert _push(name, json.dumps({"event_id": "u-2"}).encode(), **metadata) == (204, None)
    assert calls == [{"event_id": "u-2"}]
    assert InboxEvent.objects.get(topic=name, event_id="u-2").message_id == "2070443601311540"


@pytest.mark.parametrize("first", ["wrapped", "unwrapped"])
def test_the_same_event_wrapped_and_unwrapped_is_one_event(test_topic, first):
    name, calls, _ = test_topic
    event = {"event_id": "u-3", "n": 1}
    bodies = {"wrapped": push_body(event), "unwrapped": json.dumps(event).encode()}
    second = "unwrapped" if first == "wrapped" else "wrapped"
    assert _push(name, bodies[first])[0] == 204
    assert _push(name, bodies[second], **{"x-goog-pubsub-message-id": "other-delivery"})[0] == 204
    assert calls == [event]
    assert InboxEvent.objects.filter(topic=name, event_id="u-3").count() == 1


@pytest.mark.parametrize(
    "body, field",
    [
        (b"{not json", "body"),
        (b"[1, 2]", "body"),
        (b"\x00\x01binary \xff data", "body"),  # raw message data may be any bytes
        (json.dumps({"n": 1}).encode(), "event_id"),
        (json.dumps({"event_id": "u-4", "n": "seven"}).encode(), "n"),
        (json.dumps({"message": "not an object", "subscription": "projects/p/subscriptions/s"}).encode(), "message"),
    ],
)
def test_a_bad_unwrapped_body_is_400_and_one_dead_letter(test_topic, body, field):
    name, calls, _ = test_topic
    for _ in range(3):
        status, answer = _push(name, body)
        assert (status, answer["field"]) == (400, field)
        assert answer["error"]
    letter = DeadLetter.objects.get()
    assert (letter.topic, letter.field, letter.times_received) == (name, field, 3)
    # bytes that are not UTF-8 kept as \xNN escapes (readable, and distinct bodies stay distinct), NUL as U+FFFD
    assert letter.raw_body == body.decode("utf-8", errors="backslashreplace").replace("\x00", "\ufffd")
    assert not calls and not InboxEvent.objects.exists()


def test_a_10_mb_message_is_accepted_wrapped_and_unwrapped(test_topic):
    name, calls, _ = test_topic
    padding = "x" * (10 * MB)  # the topic's schema ignores fields it does not name: only the size is tested
    wrapped = push_body({"event_id": "big-1", "padding": padding})
    assert settings.DATA_UPLOAD_MAX_MEMORY_SIZE < 13 * MB < len(wrapped) <= settings.PUBSUB_PUSH_MAX_BODY_BYTES
    assert _push(name, wrapped) == (204, None)
    assert _push(name, json.dumps({"event_id": "big-2", "padding": padding}).encode()) == (204, None)
    assert calls == [{"event_id": "big-1"}, {"event_id": "big-2"}]
    assert not DeadLetter.objects.exists()


def test_a_body_over_the_limit_is_400_and_a_dead_letter_of_its_head_size_and_hash(test_topic):
    name, calls, _ = test_topic
    data = json.dumps({"event_id": "huge-1", "padding": "y" * (11 * MB)}).encode()
    body = json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1"},
                       "subscription": "projects/p/subscriptions/s"}).encode()
    limit = settings.PUBSUB_PUSH_MAX_BODY_BYTES
    assert len(body) > limit
    for _ in range(2):
        status, answer = _push(name, body)
        assert status == 400
        assert answer == {"error": f"body is {len(body)} bytes, more than the {limit} a push may carry "
                                   "(PUBSUB_PUSH_MAX_BODY_BYTES)", "field": "body"}
    letter = DeadLetter.objects.get()
    digest = hashlib.sha256(body).hexdigest()
    assert (letter.topic, letter.field, letter.times_received, letter.body_sha256) == (name, "body", 2, digest)
    assert letter.raw_body == body[:OVERSIZED_BODY_KEPT_BYTES].decode()
    assert str(len(body)) in letter.error and digest in letter.error
    assert not calls and not InboxEvent.objects.exists()


def test_the_limit_is_a_setting(test_topic, settings):
    name, calls, _ = test_topic
    settings.PUBSUB_PUSH_MAX_BODY_BYTES = 200
    small, large = push_body({"event_id": "s-1"}), push_body({"event_id": "s-2", "padding": "z" * 200})
    assert len(small) <= 200 < len(large)
    assert _push(name, small)[0] == 204
    assert _push(name, large) == (400, {"error": f"body is {len(large)} bytes, more than the 200 a push may "
                                                 "carry (PUBSUB_PUSH_MAX_BODY_BYTES)", "field": "body"})
    assert calls == [{"event_id": "s-1"}]
    assert DeadLetter.objects.get().raw_body == large.decode()  # shorter than the head kept: all of it
