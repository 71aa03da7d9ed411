"""Property-based tests (hypothesis) of what callers send: for any input, the answer is a result or the documented
400 with a field, never another exception; and whatever is accepted can be stored.

Deterministic (derandomize) and bounded (200 examples each) so they run in CI like any other test.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import JSONRefused, json_loads_strict
from mercari_ops.common.schema import BIGINT_MAX, BIGINT_MIN
from mercari_ops.inbox.registry import get_topic
from mercari_ops.inbox.services import envelope_decode, event_clean
from mercari_ops.inbox.tests.valid_events import VALID

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large, HealthCheck.filter_too_much])

UNSTORABLE = ["\x00", "\ud800", "\udbff", "\udc00", "\udfff"]
strings = st.one_of(
    st.text(max_size=20),
    st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=5), st.sampled_from(UNSTORABLE + ["\ud83d\ude00"]),
              st.text(max_size=5)),
    st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00", "2026-10-03T09:00:00Z",
                     "2026-10", "sell", "mercari", "mercard.transaction", "saved_search_new_items"]),
)
numbers = st.one_of(st.integers(), st.integers(min_value=-(2**70), max_value=2**70),
                    st.floats(allow_nan=True, allow_infinity=True))
json_values = st.recursive(st.none() | st.booleans() | numbers | strings,
                           lambda children: st.lists(children, max_size=4)
                           | st.dictionaries(strings, children, max_size=4),
                           max_leaves=20)


def deep(depth: int, kind: str) -> str:
    opening, closing = {"list": ("[", "]"), "object": ('{"k": ', "}")}[kind]
    return opening * depth + "1" + closing * depth


def serialised(value, ensure_ascii: bool) -> bytes:
    """JSON text of any value: NaN and Infinity as Python writes them, surrogates as escapes or as raw bytes."""
    return json.dumps(value, ensure_ascii=ensure_ascii, allow_nan=True).encode("utf-8", errors="surrogatepass")


bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(serialised, json_values, st.booleans()),
    st.builds(lambda d, k: deep(d, k).encode(), st.integers(min_value=1, max_value=3000),
              st.sampled_from(["list", "object"])),
)


def assert_storable(value) -> None:
    """What is accepted fits PostgreSQL: JSON text without NUL, valid UTF-8, finite numbers, bigint integers."""
    text = json.dumps(value, allow_nan=False)
    text.encode("utf-8")
    assert "\\u0000" not in text
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            node.encode("utf-8")
            assert "\x00" not in node
        elif isinstance(node, dict):
            stack.extend(node.keys())
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


@PROPERTY
@given(bodies)
def test_the_strict_decoder_returns_storable_json_or_refuses_naming_the_field(body):
    try:
        value = json_loads_strict(body)
    except JSONRefused as exc:
        assert exc.field and exc.message
        return
    assert_storable(value)


@PROPERTY
@given(bodies, st.booleans())
def test_the_push_envelope_decoder_gives_an_event_or_a_400_with_a_field(data, wrapped):
    body = json.dumps({"message": {"data": base64.b64encode(data).decode(), "messageId": "m-1"},
                       "subscription": "projects/p/subscriptions/s"}).encode() if wrapped else data
    try:
        event, message_id = envelope_decode(body)
    except ValidationFailed as exc:
        assert exc.field and exc.message
        return
    assert isinstance(event, dict) and isinstance(message_id, str)
    assert_storable(event)


def mutated_events(topic: str):
    """The topic's valid event with one field replaced by any JSON value, removed, or a bill line mutated."""
    valid = VALID[topic]
    field_names = sorted(valid)
    replaced = st.builds(lambda key, value: {**valid, key: value}, st.sampled_from(field_names), json_values)
    removed = st.builds(lambda key: {k: v for k, v in valid.items() if k != key}, st.sampled_from(field_names))
    options = [replaced, removed, st.just(valid), json_values]
    if "lines" in valid:
        line = valid["lines"][0]
        options.append(st.builds(lambda key, value: {**valid, "lines": [line, {**line, key: value}]},
                                 st.sampled_from(sorted(line)), json_values))
    return st.one_of(*options)


@pytest.mark.parametrize("topic", sorted(VALID))
def test_each_topic_schema_gives_a_storable_event_or_a_400_with_a_field(topic):
    spec = get_topic(topic)

    @PROPERTY
    @given(mutated_events(topic), st.booleans())
    def check(event, ensure_ascii):
        try:
            raw, _ = envelope_decode(serialised(event, ensure_ascii))
            cleaned = event_clean(spec, raw)
        except ValidationFailed as exc:
            assert exc.field, exc.message
            return
        assert_storable(cleaned)
        for value in cleaned.values():
            if isinstance(value, int):
                assert BIGINT_MIN <= value <= BIGINT_MAX

    check()


@pytest.mark.django_db
def test_the_estimate_answers_200_or_a_400_with_a_field_for_any_body(api_client):
    valid = {"customer_id": "c-1", "amount": 100, "channel": "mercari", "merchant_id": "m-1",
             "payment_method": "mercard"}
    item = {k: v for k, v in valid.items() if k != "customer_id"}
    estimate_bodies = st.one_of(
        bodies,
        st.builds(lambda key, value, ascii_: serialised({**valid, key: value}, ascii_),
                  st.sampled_from(sorted(valid)), json_values, st.booleans()),
        st.builds(lambda key, value, ascii_: serialised({"customer_id": "c-1", "items": [item, {**item, key: value}]},
                                                        ascii_),
                  st.sampled_from(sorted(item)), json_values, st.booleans()),
    )

    @settings(PROPERTY, max_examples=150)
    @given(estimate_bodies)
    def check(body):
        response = api_client.generic("POST", "/api/campaigns/estimate", body, content_type="application/json")
        assert response.status_code in (200, 400), (response.status_code, response.content[:300])
        if response.status_code == 400:  # {"error", "field"}; field null only for the body as a whole
            assert set(response.json()) == {"error", "field"}, response.json()

    check()
