"""json_loads_strict: what it refuses, naming where, and what it lets through unchanged."""

import json

import pytest

from mercari_ops.common.jsonsafe import MAX_DEPTH, JSONRefused, json_loads_strict, path_storable, text_storable
from mercari_ops.common.schema import MAX_YEN, DateTime, Int, List, Schema, SchemaError, Str


def refused(data, **kwargs) -> tuple[str, str]:
    with pytest.raises(JSONRefused) as caught:
        json_loads_strict(data, **kwargs)
    return caught.value.field, caught.value.message


def test_ordinary_bodies_parse_as_json_loads_does():
    body = {"event_id": "e-1", "amount": 3000, "attributes": {"merchant_name": "メルカリ", "emoji": "😀"},
            "lines": [{"a": 1.5}, None, True], "nested": [[[]]]}
    for text in (json.dumps(body), json.dumps(body, ensure_ascii=False)):  # \u escapes, valid pairs included
        assert json_loads_strict(text.encode()) == body
        assert json_loads_strict(text) == body


@pytest.mark.parametrize("opening, closing", [("[", "]"), ('{"a":', "}")])
def test_nesting_10000_deep_is_refused_without_recursion(opening, closing):
    deep = (opening * 10_000 + "1" + closing * 10_000).encode()
    assert refused(deep, field="message.data") == ("message.data",
                                                   f"message.data is nested more than {MAX_DEPTH} levels deep")


def test_nesting_up_to_the_limit_is_accepted_and_brackets_inside_strings_do_not_count():
    assert json_loads_strict("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert refused("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))[0] == "body"
    tricky = json.dumps({"s": "[[[{{{" * 100 + '\\"' + "]" * 50, "t": ["\\"]})
    assert json_loads_strict(tricky)["s"].startswith("[[[{{{")


def test_an_unterminated_string_full_of_escaped_quotes_is_refused_in_linear_time():
    # each quote would restart a naive string scan: quadratic on a few MB
    body = ("[" * 100 + '"' + '\\"' * 2_000_000).encode()
    assert refused(body)[0] == "body"


@pytest.mark.parametrize("body, field", [
    ({"event_id": "ping-\u0000"}, "event_id"),
    ({"attributes": {"k": "v\u0000"}}, "attributes.k"),
    ({"items": [{"merchant_id": "m"}, {"merchant_id": "\u0000"}]}, "items.1.merchant_id"),
    ({"user_id": "\ud800"}, "user_id"),
    ({"params": {"search_id": ["a", "\udfff-b"]}}, "params.search_id.1"),
    ({"attributes": {"a\u0000b": 1}}, "attributes.a\\u0000b"),
    ({"attributes": {"\ud83d": 1}}, "attributes.\\ud83d"),
    (["\u0000"], "0"),
])
def test_nul_and_lone_surrogates_are_refused_naming_the_path(body, field):
    got, message = refused(json.dumps(body).encode())
    assert got == field
    assert ("NUL" in message) or ("surrogate" in message)


def test_the_path_is_prefixed_and_the_document_named_when_the_value_is_the_document():
    assert refused(b'{"k": "\\u0000"}', prefix="message.attributes")[0] == "message.attributes.k"
    assert refused(b'"\\u0000"', field="line")[0] == "line"


def test_look_alikes_of_nul_and_surrogates_are_accepted():
    assert json_loads_strict(r'{"a": "\\u0000", "b": "\\ud800"}') == {"a": "\\u0000", "b": "\\ud800"}
    assert json_loads_strict(r'"\ud83d\ude00"') == "😀"


@pytest.mark.parametrize("body", [b"\xff\xfe{}", b'{"a": "\xed\xa0\x80"}', b"\x00", b'{"a": "caf\xe9"}'])
def test_bytes_that_are_not_utf8_are_refused(body):
    field, message = refused(body)
    assert field == "body" and ("UTF-8" in message or "not valid JSON" in message)


def test_a_str_holding_a_raw_surrogate_is_refused():
    assert refused('{"a": "\ud800"}')[0] == "body"


@pytest.mark.parametrize("body", [b'{"a": NaN}', b'{"a": Infinity}', b'[-Infinity]', b'{"a": 1e400}',
                                  b'[-1e999]', b"[" + b"9" * 5000 + b"]", b"", b"{", b'{"a" 1}', b"\x00{}"])
def test_numbers_jsonb_cannot_hold_and_broken_syntax_are_refused(body):
    assert refused(body)[0] == "body"


def test_storable_helpers():
    assert text_storable("a\x00b\ud800c") == "a\ufffdb\ufffdc"
    assert path_storable("k\x00\ud800") == "k\\u0000\\ud800"
    assert len(path_storable("x" * 500)) == 128


# --- schema ranges -------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00",
                                   "1999-12-31T23:59:59Z", "2100-01-01T00:00:00Z", "2026-10-03T09:00:00Z" * 5])
def test_times_out_of_range_are_refused_naming_the_field(value):
    with pytest.raises(SchemaError) as caught:
        Schema({"occurred_at": DateTime()}).clean({"occurred_at": value})
    assert caught.value.field == "occurred_at"


def test_times_in_range_are_normalised_to_utc():
    schema = Schema({"changed_at": DateTime()})
    assert schema.clean({"changed_at": "2000-01-01T09:00:00+09:00"}) == {"changed_at": "2000-01-01T00:00:00Z"}
    assert schema.clean({"changed_at": "2099-12-31T23:59:59Z"}) == {"changed_at": "2099-12-31T23:59:59Z"}


def test_integers_default_to_bigint_and_money_to_max_yen():
    with pytest.raises(SchemaError):
        Schema({"n": Int()}).clean({"n": 2**63})
    assert Schema({"n": Int()}).clean({"n": 2**63 - 1}) == {"n": 2**63 - 1}
    lines = Schema({"lines": List(Schema({"amount": Int(min_value=-MAX_YEN, max_value=MAX_YEN)}))})
    with pytest.raises(SchemaError) as caught:
        lines.clean({"lines": [{"amount": 1}, {"amount": MAX_YEN + 1}]})
    assert caught.value.field == "lines.1.amount"


def test_strings_holding_nul_or_surrogates_are_refused_even_when_not_parsed_strictly():
    for value in ("a\x00", "\udc00"):
        with pytest.raises(SchemaError) as caught:
            Schema({"customer_id": Str(max_length=64)}).clean({"customer_id": value})
        assert caught.value.field == "customer_id"
