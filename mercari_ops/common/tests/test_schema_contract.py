"""The OpenAPI schema (GET /api/schema/) says what the server does: answers validate against it, what it
allows is taken, what the server refuses it refuses too, and every path under /api/ answers JSON."""

import copy
import importlib
import json

import jsonschema
import pytest
from django.test import override_settings
from django.urls import clear_url_caches
from drf_spectacular.generators import SchemaGenerator

from campaigns.models import Campaign
from campaigns.tests.test_campaign_api import BODY as CAMPAIGN

pytestmark = pytest.mark.django_db

TOKEN_OPERATIONS = {
    ("get", "/api/whoami"), ("post", "/api/campaigns/estimate"), ("post", "/api/campaigns"),
    ("get", "/api/campaigns/{campaign_id}"), ("get", "/api/loyalty/customers/{customer_id}"),
    ("get", "/api/history/customers/{customer_id}/payments"), ("get", "/api/history/payments/{payment_id}"),
    ("post", "/api/history/payments/{payment_id}/repay"), ("post", "/api/line/link-nonce"),
    ("post", "/api/line/unlink"),
}


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


def _resolve(node, components):
    """OpenAPI 3.0 schema -> plain JSON Schema: $refs inlined, `nullable` as a null alternative."""
    if isinstance(node, list):
        return [_resolve(item, components) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _resolve(components[node["$ref"].rsplit("/", 1)[1]], components)
    node = {key: _resolve(value, components) for key, value in node.items()}
    if node.pop("nullable", False):
        return {"anyOf": [node, {"type": "null"}]}
    return node


def response_schema(schema, method: str, path: str, status: int) -> dict:
    response = schema["paths"][path][method]["responses"][str(status)]
    return _resolve(response["content"]["application/json"]["schema"], schema["components"]["schemas"])


def request_schema(schema, method: str, path: str) -> dict:
    body = schema["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]
    return _resolve(body, schema["components"]["schemas"])


def parameter_schema(schema, method: str, path: str, name: str) -> dict:
    operation = schema["paths"][path][method]
    parameter = next(p for p in operation.get("parameters", []) if p["name"] == name)
    return _resolve(parameter["schema"], schema["components"]["schemas"])


def assert_conforms(schema, method, path, response):
    body = response.json()
    jsonschema.validate(body, response_schema(schema, method, path, response.status_code))
    return body


def is_valid(instance, json_schema) -> bool:
    return jsonschema.Draft7Validator(json_schema).is_valid(instance)


def test_every_token_operation_documents_its_401_with_the_error_body(schema):
    secured = {(method, path) for path, item in schema["paths"].items() for method, operation in item.items()
               if any(requirement for requirement in operation.get("security", []))
               and all("Auth" in name for requirement in operation["security"] for name in requirement)
               and path.startswith("/api/")}
    assert secured == TOKEN_OPERATIONS
    for method, path in TOKEN_OPERATIONS:
        error = response_schema(schema, method, path, 401)
        assert error["required"] == ["error", "field"], (method, path)


def test_unauthenticated_calls_answer_the_documented_401(client, schema):
    for method, path, url in [("get", "/api/whoami", "/api/whoami"),
                              ("post", "/api/campaigns/estimate", "/api/campaigns/estimate"),
                              ("post", "/api/line/unlink", "/api/line/unlink"),
                              ("get", "/api/loyalty/customers/{customer_id}", "/api/loyalty/customers/c-1")]:
        response = getattr(client, method)(url, data="{}", content_type="application/json") if method == "post" \
            else client.get(url)
        assert response.status_code == 401, url
        assert_conforms(schema, method, path, response)


def test_link_nonce_and_unlink_document_their_errors(schema, api_client):
    link = schema["paths"]["/api/line/link-nonce"]["post"]["responses"]
    unlink = schema["paths"]["/api/line/unlink"]["post"]["responses"]
    assert {"200", "400", "401", "409"} <= set(link)
    assert {"200", "400", "401", "404"} <= set(unlink)
    response = api_client.post("/api/line/link-nonce", {"customer_id": "c-1", "link_token": "nope"}, format="json")
    assert response.status_code == 400
    assert assert_conforms(schema, "post", "/api/line/link-nonce", response)["field"] == "link_token"
    response = api_client.post("/api/line/unlink", {"customer_id": "c-1"}, format="json")
    assert response.status_code == 404
    assert_conforms(schema, "post", "/api/line/unlink", response)


def test_both_estimate_forms_answer_what_the_schema_says(schema, api_client):
    estimate = request_schema(schema, "post", "/api/campaigns/estimate")
    single = {"customer_id": "c-1", "amount": 3000, "channel": "mercari"}
    listed = {"customer_id": "c-1", "items": [{"amount": 3000, "channel": "mercari"},
                                              {"amount": 1200, "channel": "outside", "merchant_id": "m-77"}]}
    for body in (single, listed):
        assert is_valid(body, estimate)
        response = api_client.post("/api/campaigns/estimate", body, format="json")
        assert response.status_code == 200
        assert_conforms(schema, "post", "/api/campaigns/estimate", response)
    # a body with both: the view answers the list, and the schema calls it a list page, not one payment
    both = {**single, "items": listed["items"]}
    assert is_valid(both, estimate)
    assert not is_valid(both, estimate["oneOf"][0]) and is_valid(both, estimate["oneOf"][1])
    answer = assert_conforms(schema, "post", "/api/campaigns/estimate",
                             api_client.post("/api/campaigns/estimate", both, format="json"))
    assert len(answer["items"]) == 2


@pytest.mark.parametrize("body, field", [
    ({"customer_id": "", "amount": 1, "channel": "mercari"}, "customer_id"),
    ({"customer_id": "c-1", "amount": 1, "channel": "mercari", "merchant_id": ""}, "merchant_id"),
    ({"customer_id": "c-1", "amount": 10**12 + 1, "channel": "mercari"}, "amount"),
    ({"customer_id": "c-1", "items": []}, "items"),
])
def test_estimate_bodies_the_view_refuses_are_outside_the_schema(schema, api_client, body, field):
    assert not is_valid(body, request_schema(schema, "post", "/api/campaigns/estimate"))
    response = api_client.post("/api/campaigns/estimate", body, format="json")
    assert response.status_code == 400
    assert assert_conforms(schema, "post", "/api/campaigns/estimate", response)["field"] == field


def test_page_size_zero_is_outside_the_schema_and_refused(schema, api_client):
    path = "/api/history/customers/{customer_id}/payments"
    page_size = parameter_schema(schema, "get", path, "page_size")
    assert is_valid(1, page_size) and is_valid(100, page_size)
    assert not is_valid(0, page_size) and not is_valid(101, page_size)
    for size in (0, 101):
        response = api_client.get(f"/api/history/customers/c-1/payments?page_size={size}")
        assert response.status_code == 400
        assert assert_conforms(schema, "get", path, response)["field"] == "page_size"


def test_a_blank_idempotency_key_is_outside_the_schema_and_refused(schema, api_client):
    path = "/api/history/payments/{payment_id}/repay"
    key = parameter_schema(schema, "post", path, "Idempotency-Key")
    assert is_valid("k-1", key)
    for blank in ("", "   "):
        assert not is_valid(blank, key)
        response = api_client.post("/api/history/payments/p-1/repay", HTTP_IDEMPOTENCY_KEY=blank)
        assert response.status_code == 400
        assert assert_conforms(schema, "post", path, response)["field"] == "Idempotency-Key"


@pytest.mark.parametrize("path, body, field", [
    ("/api/line/link-nonce", {"customer_id": "c-1", "link_token": ""}, "link_token"),
    ("/api/line/link-nonce", {"customer_id": "", "link_token": "t"}, "customer_id"),
    ("/api/line/unlink", {"customer_id": ""}, "customer_id"),
])
def test_blank_link_fields_are_outside_the_schema_and_refused(schema, api_client, path, body, field):
    assert not is_valid(body, request_schema(schema, "post", path))
    response = api_client.post(path, body, format="json")
    assert response.status_code == 400
    assert assert_conforms(schema, "post", path, response)["field"] == field


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": 7}, "name"),
    ({"name": "x" * 201}, "name"),
    ({"upper_limit": 10**20}, "upper_limit"),
    ({"upper_limit": 2**31}, "upper_limit"),
    ({"user_filters": []}, "user_filters"),
    ({"payment_filters": ""}, "payment_filters"),
    ({"rates": [{"stage_from": -1, "stage_to": 5, "rate": "1.0"}]}, "rates.0.stage_from"),
    ({"rates": [{"stage_from": 1, "stage_to": 40000, "rate": "1.0"}]}, "rates.0.stage_to"),
    ({"rates": [{"stage_from": 1, "stage_to": 5, "rate": 1.5}]}, "rates.0.rate"),
])
def test_campaign_bodies_outside_the_schema_are_400_naming_the_field(schema, api_client, change, field):
    body = {**copy.deepcopy(CAMPAIGN), **change}
    assert not is_valid(body, request_schema(schema, "post", "/api/campaigns"))
    response = api_client.post("/api/campaigns", body, format="json")
    assert response.status_code == 400, response.content
    assert assert_conforms(schema, "post", "/api/campaigns", response)["field"] == field
    assert not Campaign.objects.exists()


def test_a_campaign_created_and_read_conforms(schema, api_client):
    assert is_valid(CAMPAIGN, request_schema(schema, "post", "/api/campaigns"))
    response = api_client.post("/api/campaigns", CAMPAIGN, format="json")
    assert response.status_code == 201
    created = assert_conforms(schema, "post", "/api/campaigns", response)
    response = api_client.get(f"/api/campaigns/{created['id']}")
    assert assert_conforms(schema, "get", "/api/campaigns/{campaign_id}", response) == created


@pytest.mark.parametrize("method, url", [
    ("get", "/api/campaigns/2.37e-104"), ("get", "/api/campaigns/-1"), ("get", "/api/campaigns/99999999999"),
    ("get", "/api/nothing-here"), ("post", "/api/line/nothing-here"), ("delete", "/api/"),
    ("post", "/line/nothing"), ("post", "/pubsub/push/"),
])
def test_unknown_machine_paths_answer_a_json_404(api_client, method, url):
    response = getattr(api_client, method)(url)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert set(response.json()) == {"error", "field"}


@pytest.mark.parametrize("debug", [False, True])
def test_a_json_404_also_with_debug_on_and_pages_keep_their_html_404(client, debug):
    with override_settings(DEBUG=debug):
        assert client.get("/api/campaigns/2.37e-104")["Content-Type"] == "application/json"
        response = client.get("/nothing-here")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("text/html")


def test_the_push_and_the_braze_webhook_are_in_the_schema(schema):
    push = schema["paths"]["/pubsub/push/{topic}"]["post"]
    braze = schema["paths"]["/line/braze/webhook"]["post"]
    assert {"204", "400", "401", "503"} <= set(push["responses"])
    assert {"202", "400", "401", "503"} <= set(braze["responses"])
    assert push["security"] == [{"pubsubBearer": []}] and braze["security"] == [{"brazeBearer": []}]
    assert "unwrapped" in push["description"] or "no wrapper" in push["description"]
    assert set(schema["components"]["securitySchemes"]) >= {"pubsubBearer", "brazeBearer"}
    envelope = request_schema(schema, "post", "/pubsub/push/{topic}")
    assert is_valid({"message": {"data": "e30=", "messageId": "1"}, "subscription": "s"}, envelope)
    braze_body = request_schema(schema, "post", "/line/braze/webhook")
    assert not is_valid({"user_id": "", "dispatch_id": "d", "template": "t"}, braze_body)


def test_the_schema_is_served_as_json(client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    assert "/pubsub/push/{topic}" in json.loads(response.content)["paths"]


def _reload_urls():
    import mercari_ops.urls

    clear_url_caches()
    importlib.reload(mercari_ops.urls)
    clear_url_caches()


def test_the_bare_view_is_off_unless_the_bench_turns_it_on(client, settings):
    assert settings.BENCH_BARE_VIEW is False
    assert client.post("/bench/bare").status_code == 404
    settings.BENCH_BARE_VIEW = True
    _reload_urls()
    try:
        assert client.post("/bench/bare").status_code == 204
    finally:
        settings.BENCH_BARE_VIEW = False
        _reload_urls()
    assert client.post("/bench/bare").status_code == 404



@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-05:00",
                                   "2026-10-01 00:00:00+00:00", "2026-10-01T00:00:00+0000", "2026-10-01",
                                   "2026-10-01T00:00:00"])
def test_campaign_times_are_rfc_3339_instants_postgresql_can_store(api_client, value):
    # before: the first two answered 500 (OverflowError), the next two were taken though not RFC 3339
    response = api_client.post("/api/campaigns", {**copy.deepcopy(CAMPAIGN), "starts_at": value}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == "starts_at"


def test_history_answers_conform(schema, api_client, push):
    from history.tests.factories import card_tree

    for event in card_tree(1, repaid=False) + card_tree(2, start=10, refund=True):
        assert push("payment-events", event).status_code == 204
    page = assert_conforms(schema, "get", "/api/history/customers/{customer_id}/payments",
                           api_client.get("/api/history/customers/c-1/payments?page_size=1"))
    assert page["entries"] and page["next_cursor"]
    assert_conforms(schema, "get", "/api/history/customers/{customer_id}/payments",
                    api_client.get(f"/api/history/customers/c-1/payments?cursor={page['next_cursor']}"))
    detail = assert_conforms(schema, "get", "/api/history/payments/{payment_id}",
                             api_client.get("/api/history/payments/tx-1"))
    assert detail["actions"]
    response = api_client.get("/api/history/payments/nope")
    assert response.status_code == 404
    assert_conforms(schema, "get", "/api/history/payments/{payment_id}", response)


def test_loyalty_answers_conform(schema, api_client):
    from loyalty.services import activity_apply
    from loyalty.tests.factories import event, publish_rules

    publish_rules()
    activity_apply(events=[event(amount=6000), event(amount=6000), event(kind="sell", amount=900)])
    body = assert_conforms(schema, "get", "/api/loyalty/customers/{customer_id}",
                           api_client.get("/api/loyalty/customers/c-1"))
    assert body["recent_changes"]
    response = api_client.get("/api/loyalty/customers/c-unknown")
    assert response.status_code == 404
    assert_conforms(schema, "get", "/api/loyalty/customers/{customer_id}", response)
