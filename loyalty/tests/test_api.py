from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from loyalty import services
from loyalty.selectors import customer_stage_get
from loyalty.services import activity_apply
from loyalty.tests.factories import event, publish_rules
from mercari_ops.common.business_time import business_month_label

pytestmark = pytest.mark.django_db


def test_customer_profile_has_stage_window_totals_next_stage_and_changes(api_client):
    publish_rules()
    now = datetime.now(UTC).replace(microsecond=0)
    activity_apply(events=[event(amount=6000, occurred_at=now), event(amount=6000, occurred_at=now),
                           event(kind="sell", amount=900, occurred_at=now),
                           event(kind="pay", amount=-100, occurred_at=now),
                           event(amount=99999, occurred_at="2014-01-01T00:00:00Z")])
    response = api_client.get("/api/loyalty/customers/c-1")
    assert response.status_code == 200
    body = response.json()
    assert (body["customer_id"], body["stage"], body["stage_name"], body["rules_stage"]) == ("c-1", 20, "Silver", 20)
    assert body["totals"] == {"buy": {"amount": 12000, "count": 2}, "sell": {"amount": 900, "count": 1},
                              "pay": {"amount": -100, "count": -1}}
    assert body["window"]["months"] == 12 and body["window"]["to"] == business_month_label(now)
    assert body["next_stage"] == {"stage": 30, "name": "Gold", "combine": "any",
                                  "thresholds": {"buy_amount": 50000, "sell_count": 10},
                                  "missing": {"buy_amount": 38000, "sell_count": 9}}
    assert [(c["from"], c["to"], c["cause"]) for c in body["recent_changes"]] == [(10, 20, "upgrade")]
    assert body["recent_changes"][0]["reason"]["reached"]["stage"] == 20
    assert body["recent_changes"][0]["at"].endswith("Z")  # APIs answer in UTC whatever the business zone
    assert body["pin"] is None and body["rules_version"] == 1


def test_pinned_customer_shows_the_pin_and_top_stage_has_no_next(api_client):
    publish_rules()
    services.stage_pin_set(customer_id="c-9", floor=40, reason="VIP", by="op",
                           expires_at=datetime.now(UTC) + timedelta(days=3))
    body = api_client.get("/api/loyalty/customers/c-9").json()
    assert (body["stage"], body["rules_stage"], body["pin"]["floor"], body["pin"]["reason"]) == (40, 10, 40, "VIP")
    assert body["next_stage"] is None


def test_unknown_customer_is_404_json(api_client):
    response = api_client.get("/api/loyalty/customers/nobody")
    assert response.status_code == 404
    assert response.json() == {"error": "unknown customer 'nobody'", "field": "customer_id"}


def test_api_needs_a_service_token(db):
    assert APIClient().get("/api/loyalty/customers/c-1").status_code == 401


def test_stage_selector_is_one_indexed_query():
    publish_rules()
    activity_apply(events=[event(customer_id="c-q", amount=60000)])
    with CaptureQueriesContext(connection) as queries:
        assert customer_stage_get(customer_id="c-q") == 30
        assert customer_stage_get(customer_id="missing") is None
    assert len(queries) == 2
    assert all("loyalty_customer" in q["sql"] and '"customer_id" =' in q["sql"] for q in queries.captured_queries)


def test_openapi_schema_documents_the_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    text = response.content.decode()
    assert "/api/loyalty/customers/{customer_id}" in text and "LoyaltyNextStage" in text
