"""POST /api/campaigns/estimate: eligibility, reasons, list form, caching, bad input."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from campaigns.catalog import catalog_get
from campaigns.models import Campaign
from campaigns.selectors import points_estimate
from campaigns.services import campaign_create, campaign_update
from campaigns.tests.conftest import INNER_RATES

pytestmark = pytest.mark.django_db
URL = "/api/campaigns/estimate"


@pytest.fixture
def live(merchants):
    """The two source-design campaigns, active now."""
    now = timezone.now()
    inner = campaign_create(name="inner", starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=30),
                            rates=INNER_RATES, user_filters={"mercard_status": [2, 3]},
                            payment_filters={"mercari_inner_payment": True}, status=Campaign.Status.ACTIVE)
    outer = campaign_create(name="outer", starts_at=now - timedelta(days=1), ends_at=now + timedelta(days=30),
                            rates=[(10, 49, "0.5")], user_filters={"mercard_status": [2, 3]},
                            payment_filters={"mercari_outer_payment": True,
                                             "merchant": {"shop_id": ["shop-88"], "invert": True},
                                             "excluded_categories": ["e_money_charge"]},
                            upper_limit=500, status=Campaign.Status.ACTIVE)
    return inner, outer


def test_marketplace_purchase_by_stage(api_client, live, customer):
    customer("c-1", stage=30)
    response = api_client.post(URL, {"customer_id": "c-1", "amount": 3000, "channel": "mercari"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"eligible": True, "points": 90, "rate": "3.0", "campaign_id": live[0].pk,
                               "reason": None}


def test_estimate_ignores_the_cap(api_client, live, customer):
    customer("c-1", stage=10)
    body = {"customer_id": "c-1", "amount": 10_000_000, "channel": "outside", "merchant_id": "m-77"}
    assert api_client.post(URL, body, format="json").json()["points"] == 50_000  # cap of 500 not applied


def _card_holder_without_activity(customer_id: str) -> None:
    from campaigns.services import card_status_record_many

    card_status_record_many(events=[{"event_id": f"cs-{customer_id}", "customer_id": customer_id,
                                     "mercard_status": 2, "changed_at": "2026-09-01T00:00:00Z"}])


def test_a_card_holder_without_marketplace_activity_has_the_lowest_stage(api_client, live):
    from loyalty.tests.factories import publish_rules

    publish_rules()  # stages 10 (lowest) to 40
    _card_holder_without_activity("c-new")

    response = api_client.post(URL, {"customer_id": "c-new", "amount": 3000, "channel": "mercari"}, format="json")

    assert response.json() == {"eligible": True, "points": 30, "rate": "1.0", "campaign_id": live[0].pk,
                               "reason": None}


def test_unknown_customer_is_not_eligible_with_a_reason(api_client, live):
    response = api_client.post(URL, {"customer_id": "nobody", "amount": 3000, "channel": "mercari"}, format="json")
    assert response.status_code == 200
    assert response.json() == {"eligible": False, "points": 0, "rate": None, "campaign_id": None,
                               "reason": "unknown_customer"}


@pytest.mark.parametrize("body, reason", [
    ({"channel": "outside", "merchant_id": "m-88"}, "merchant_not_eligible"),
    ({"channel": "outside", "merchant_id": "m-charge"}, "category_excluded"),
    ({"channel": "outside", "merchant_id": "m-unknown"}, "unknown_merchant"),
])
def test_reasons(api_client, live, customer, body, reason):
    customer("c-1", stage=20)
    response = api_client.post(URL, {"customer_id": "c-1", "amount": 3000, **body}, format="json")
    assert response.json()["reason"] == reason and response.json()["eligible"] is False


def test_card_status_not_eligible(api_client, live, customer):
    customer("c-2", stage=20, card_status=1)
    response = api_client.post(URL, {"customer_id": "c-2", "amount": 3000, "channel": "mercari"}, format="json")
    assert response.json()["reason"] == "card_status_not_eligible"


def test_no_active_campaign(api_client, customer, db):
    customer("c-1")
    response = api_client.post(URL, {"customer_id": "c-1", "amount": 3000, "channel": "mercari"}, format="json")
    assert response.json()["reason"] == "no_active_campaign"


def test_list_of_items_for_one_customer_uses_one_query(api_client, live, customer, settings):
    customer("c-1", stage=40)
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 60
    catalog_get()  # warm this process's catalog, as a running server would have
    api_client.post(URL, {"customer_id": "c-1", "amount": 1, "channel": "mercari"}, format="json")  # warm token
    items = [{"amount": 3000, "channel": "mercari"},
             {"amount": 3000, "channel": "outside", "merchant_id": "m-mercari-ap", "payment_method": "apple_pay"},
             {"amount": 2000, "channel": "outside", "merchant_id": "m-77"}]
    with CaptureQueriesContext(connection) as queries:
        response = api_client.post(URL, {"customer_id": "c-1", "items": items}, format="json")
    assert response.status_code == 200
    assert [r["points"] for r in response.json()["items"]] == [120, 120, 10]
    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "loyalty_customer" in queries[0]["sql"] and "campaigns_cardstatus" in queries[0]["sql"]


def test_campaign_change_is_seen_after_the_generation_moves(live, customer, settings):
    customer("c-1", stage=10)
    assert points_estimate(customer_id="c-1", amount=3000, channel="mercari")["rate"] == "1.0"
    campaign_update(campaign_id=live[0].pk, rates=[(10, 49, "2.5")], by="marketer")
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 0
    assert points_estimate(customer_id="c-1", amount=3000, channel="mercari")["rate"] == "2.5"


def test_stale_for_at_most_the_check_interval(live, customer, settings):
    customer("c-1", stage=10)
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 3600
    assert points_estimate(customer_id="c-1", amount=3000, channel="mercari")["rate"] == "1.0"
    campaign_update(campaign_id=live[0].pk, rates=[(10, 49, "2.5")], by="marketer")
    # within the interval this process still answers from memory (no query for campaigns) ...
    assert points_estimate(customer_id="c-1", amount=3000, channel="mercari")["rate"] == "1.0"
    settings.CAMPAIGNS_CATALOG_CHECK_SECONDS = 0
    # ... and picks the change up at the next check
    assert points_estimate(customer_id="c-1", amount=3000, channel="mercari")["rate"] == "2.5"


@pytest.mark.parametrize("body, field", [
    ({"amount": 3000, "channel": "mercari"}, "customer_id"),
    ({"customer_id": "c-1", "channel": "mercari"}, "amount"),
    ({"customer_id": "c-1", "amount": "3000", "channel": "mercari"}, "amount"),
    ({"customer_id": "c-1", "amount": 3000, "channel": "moon"}, "channel"),
    ({"customer_id": "c-1", "items": []}, "items"),
    ({"customer_id": "c-1", "items": [{"amount": 1, "channel": "mercari"}, {"amount": 1}]}, "items.1.channel"),
    ({"customer_id": "x" * 65, "amount": 1, "channel": "mercari"}, "customer_id"),
])
def test_malformed_input_is_400_naming_the_field(api_client, live, body, field):
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == field and response.json()["error"]


def test_token_required(client, live):
    response = client.post(URL, {"customer_id": "c-1", "amount": 1, "channel": "mercari"},
                           content_type="application/json")
    assert response.status_code == 401


def test_invalid_json_and_wrong_token(api_client, client, live):
    response = api_client.generic("POST", URL, "{not json", content_type="application/json")
    assert response.status_code == 400 and response.json() == {"error": "body is not valid JSON", "field": "body"}
    response = client.post(URL, {"customer_id": "c-1", "amount": 1, "channel": "mercari"},
                           content_type="application/json", HTTP_AUTHORIZATION="Token nope")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]


def test_drf_path_gives_the_same_answer(live, customer):
    from campaigns.api import EstimateView

    customer("c-1", stage=30)
    body = {"customer_id": "c-1", "amount": 3000, "channel": "mercari"}
    assert EstimateView.estimate(body) == points_estimate(customer_id="c-1", amount=3000, channel="mercari")


@pytest.mark.django_db(transaction=True)
def test_the_kept_cursor_path_answers_like_the_plain_one_and_survives_a_lost_connection(customer):
    from django.db import DatabaseError

    from campaigns.selectors import customer_facts_get
    from campaigns.services import estimate_sql

    customer("c-7", stage=30, card_status=3)
    assert customer_facts_get(customer_id="c-7") == (30, 3)
    assert not connection.in_atomic_block and not connection.queries_logged  # the server's path, not the tests'
    # the same answers as Django's cursor, call after call, on one kept cursor
    assert [customer_facts_get(customer_id="c-7") for _ in range(3)] == [(30, 3)] * 3
    assert customer_facts_get(customer_id="c-404") == (None, None)
    # prepared once on this connection (DATABASES OPTIONS["prepare_threshold"] must not be None)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert [s for s in prepared if s.startswith(estimate_sql.customer_facts().split("%s")[0])]
    kept = connection.__dict__["_estimate_cursor"]
    with CaptureQueriesContext(connection):  # logging queries: Django's own cursor, the kept one untouched
        assert customer_facts_get(customer_id="c-7") == (30, 3)
    assert connection.__dict__["_estimate_cursor"] is kept
    # the server drops the connection: Django's DatabaseError (503 in the view), then a new connection works
    kept[0].close()
    with pytest.raises(DatabaseError):
        customer_facts_get(customer_id="c-7")
    connection.close()
    assert customer_facts_get(customer_id="c-7") == (30, 3)
    assert connection.__dict__["_estimate_cursor"] is not kept
