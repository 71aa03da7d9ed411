"""Pushes that can never succeed (issue 16, points 1 and 3): a 400 naming the field and one storable dead letter,
never a 500 or a 503. Through the project's real WSGI application, as gunicorn runs it."""

import base64
import hashlib
import json

import pytest
from django.conf import settings

from conftest import push_body
from mercari_ops.common.tests.wsgi_client import wsgi_call
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.services import dead_letter_replay

from .valid_events import VALID

pytestmark = pytest.mark.django_db


def push(topic: str, body: bytes, **headers) -> tuple[int, dict | None]:
    status, _, content = wsgi_call(f"/pubsub/push/{topic}", method="POST", body=body,
                                   headers={"Authorization": f"Bearer {settings.PUBSUB_PUSH_TOKEN}", **headers})
    return status, json.loads(content) if content else None


def refused_once(topic: str, body: bytes, field: str, times: int = 2) -> DeadLetter:
    """Push `body` `times` times: each a 400 naming `field`; one dead letter, counted; nothing recorded."""
    for _ in range(times):
        status, answer = push(topic, body)
        assert (status, answer["field"]) == (400, field), answer
        assert answer["error"]
    letter = DeadLetter.objects.get()
    assert (letter.field, letter.times_received) == (field, times)
    assert letter.body_sha256 == hashlib.sha256(body).hexdigest()
    assert not InboxEvent.objects.exists()
    return letter


@pytest.mark.parametrize("topic", sorted(VALID))
@pytest.mark.parametrize("bad", ["\u0000", "\ud800"])
def test_nul_or_a_lone_surrogate_in_the_event_id_is_400_on_every_topic(topic, bad):
    letter = refused_once(topic, push_body({**VALID[topic], "event_id": f"e-{bad}"}), "event_id")
    assert letter.topic == topic


@pytest.mark.parametrize("topic, event, field", [
    ("payment-events", {**VALID["payment-events"], "attributes": {"k": "v\u0000"}}, "attributes.k"),
    ("card-bill-settled", {**VALID["card-bill-settled"], "lines": [{**VALID["card-bill-settled"]["lines"][0],
                                                                     "merchant_id": "m\u0000"}]},
     "lines.0.merchant_id"),
    ("loyalty-activity", {**VALID["loyalty-activity"], "customer_id": "\udbff"}, "customer_id"),
])
def test_unstorable_characters_anywhere_in_the_event_name_their_path(topic, event, field):
    refused_once(topic, push_body(event), field)


def test_nul_in_the_envelope_attributes_names_them():
    body = json.dumps({"message": {"data": base64.b64encode(b'{"event_id": "ping-2"}').decode(),
                                   "messageId": "m-1", "attributes": {"k": "\u0000"}},
                       "subscription": "projects/p/subscriptions/s"}).encode()
    refused_once("platform-ping", body, "message.attributes.k")


def test_an_unwrapped_event_with_nul_is_400_and_the_message_id_header_is_stored_clean(test_topic):
    name, calls, _ = test_topic
    refused_once(name, json.dumps({"event_id": "u-\u0000"}).encode(), "event_id")
    DeadLetter.objects.all().delete()
    status, _ = push(name, json.dumps({"event_id": "u-1"}).encode(), **{"x-goog-pubsub-message-id": "m\x00-1"})
    assert status == 204
    assert InboxEvent.objects.get(event_id="u-1").message_id == "m\ufffd-1"


@pytest.mark.parametrize("where, field", [("envelope", "body"), ("data", "message.data"), ("unwrapped", "body")])
def test_json_nested_10000_deep_is_400_not_a_recursion_error(where, field):
    deep = '{"event_id": "d-1", "x": ' + "[" * 10_000 + "]" * 10_000 + "}"
    body = {"envelope": ('{"message": ' * 10_000 + "1" + "}" * 10_000).encode(), "data": push_body(deep),
            "unwrapped": deep.encode()}[where]
    refused_once("platform-ping", body, field)


@pytest.mark.parametrize("topic, event, field", [
    ("loyalty-activity", {**VALID["loyalty-activity"], "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ("card-status", {**VALID["card-status"], "changed_at": "9999-12-31T23:59:59-05:00"}, "changed_at"),
    ("payment-events", {**VALID["payment-events"], "occurred_at": "0001-01-01T00:00:00+14:00"}, "occurred_at"),
    ("card-bill-settled", {**VALID["card-bill-settled"], "settled_at": "9999-12-31T23:59:59-05:00"}, "settled_at"),
    ("card-bill-settled", {**VALID["card-bill-settled"], "lines": [{**VALID["card-bill-settled"]["lines"][0],
                                                                     "amount": 10**12}]}, "lines.0.amount"),
    ("loyalty-activity", {**VALID["loyalty-activity"], "amount": -(10**11)}, "amount"),
    ("payment-events", {**VALID["payment-events"], "attributes": {"x": float("nan")}}, "message.data"),
])
def test_values_out_of_range_are_400_naming_the_field(topic, event, field):
    refused_once(topic, push_body(event), field)


@pytest.mark.parametrize("body", [b"\x00\x01binary \xff data", b'{"event_id": "\xed\xa0\x80"}',
                                  b"\xff" * 10 + b"\x00"])
def test_undecodable_bytes_are_400_and_kept_escaped_each_body_its_own_letter(body):
    letter = refused_once("platform-ping", body, "body")
    assert letter.raw_body == body.decode("utf-8", errors="backslashreplace").replace("\x00", "\ufffd")
    assert "\\x" in letter.raw_body and "kept as \\xNN" in letter.error
    # another body that only differs in bytes kept the same way is a letter of its own
    other = body.replace(b"\xff", b"\xfe").replace(b"\xa0", b"\xa1")
    assert push("platform-ping", other)[0] == 400
    assert DeadLetter.objects.count() == 2


def test_an_unknown_topic_with_nul_in_its_name_is_400_and_a_storable_letter():
    status, answer = push("no-such-\x00topic", push_body({"event_id": "e-1"}))
    assert (status, answer["field"]) == (400, "topic")
    assert DeadLetter.objects.get().topic == "no-such-\ufffdtopic"


def test_a_fixed_letter_replays_once():
    letter = refused_once("platform-ping", push_body({"event_id": "fix-\u0000"}), "event_id")
    DeadLetter.objects.filter(pk=letter.pk).update(raw_body=push_body({"event_id": "fix-1"}).decode())
    assert dead_letter_replay(letter_pk=letter.pk).outcome == "processed"
    assert InboxEvent.objects.filter(event_id="fix-1").count() == 1
