"""API bodies go through json_loads_strict (DRF's StrictJSONParser, and the estimate's own hot path): NUL, lone
surrogates, nesting 10,000 deep and undecodable bytes are a 400 naming the field, never a 500 or a 503."""

import json

import pytest

pytestmark = pytest.mark.django_db

ESTIMATE = "/api/campaigns/estimate"
CAMPAIGNS = "/api/campaigns"


def post(api_client, url: str, body) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body)
    response = api_client.generic("POST", url, data, content_type="application/json")
    return response.status_code, response.json()


@pytest.mark.parametrize("body, field", [
    ({"customer_id": "c-\u0000", "amount": 100, "channel": "mercari"}, "customer_id"),
    ({"customer_id": "\ud800", "amount": 100, "channel": "mercari"}, "customer_id"),
    ({"customer_id": "c-1", "items": [{"amount": 1, "channel": "mercari"},
                                      {"amount": 1, "channel": "outside", "merchant_id": "m-\u0000"}]},
     "items.1.merchant_id"),
    (b'{"customer_id": "c-1", "items": ' + b"[" * 70 + b"]" * 70 + b"}", "body"),
])
def test_the_estimate_refuses_unstorable_or_deep_bodies_naming_the_field(api_client, body, field):
    status, answer = post(api_client, ESTIMATE, body)
    assert (status, answer["field"]) == (400, field), answer


@pytest.mark.parametrize("body", [b'{"customer_id": "c-1", "items": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
                                  b'{"customer_id": "c-\xff", "amount": 1, "channel": "mercari"}'])
def test_the_estimate_refuses_10000_deep_items_and_bytes_that_are_not_utf8(api_client, body):
    status, answer = post(api_client, ESTIMATE, body)
    assert (status, answer["field"]) == (400, "body")


@pytest.mark.parametrize("body, field", [
    (b'{"name": ' + b'{"a": ' * 10_000 + b"1" + b"}" * 10_000 + b"}", "body"),
    ({"name": "spring\u0000", "starts_at": "2026-12-01T00:00:00Z", "ends_at": "2026-12-31T00:00:00Z",
      "rates": [{"stage_from": 10, "stage_to": 20, "rate": "1.0"}]}, "name"),
    ({"name": "spring", "user_filters": {"\ud800": 1}, "rates": []}, "user_filters.\\ud800"),
    (b"\xff\xfe", "body"),
])
def test_campaign_creation_goes_through_the_strict_parser(api_client, body, field):
    status, answer = post(api_client, CAMPAIGNS, body)
    assert (status, answer["field"]) == (400, field), answer


def test_an_ordinary_estimate_is_answered(api_client):
    status, answer = post(api_client, ESTIMATE, {"customer_id": "c-1", "amount": 100, "channel": "mercari"})
    assert status == 200 and answer["eligible"] is False
