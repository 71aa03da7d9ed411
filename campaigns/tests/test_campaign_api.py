"""POST /api/campaigns: the same validation as the admin, as {"error", "field"}."""

import pytest

from campaigns.models import Campaign

pytestmark = pytest.mark.django_db

BODY = {"name": "Autumn", "starts_at": "2026-10-01T00:00:00Z", "ends_at": "2026-11-01T00:00:00Z",
        "user_filters": {"mercard_status": [2, 3]}, "payment_filters": {"mercari_inner_payment": True},
        "upper_limit": 5000, "rates": [{"stage_from": 10, "stage_to": 19, "rate": "1.0"},
                                       {"stage_from": 20, "stage_to": 40, "rate": "2.5"}]}


def test_create_and_read(api_client):
    response = api_client.post("/api/campaigns", BODY, format="json")
    assert response.status_code == 201, response.json()
    body = api_client.get(f"/api/campaigns/{response.json()['id']}").json()
    assert body["status"] == "draft" and body["rates"][1] == {"stage_from": 20, "stage_to": 40, "rate": "2.5"}


@pytest.mark.parametrize("change, field, message", [
    ({"rates": [{"stage_from": 10, "stage_to": 20, "rate": "1.0"}, {"stage_from": 20, "stage_to": 30, "rate": "2"}]},
     "rates.1.stage_from", "stage ranges 10-20 and 20-30 overlap"),
    ({"rates": [{"stage_from": 10, "stage_to": 20, "rate": "-0.5"}]}, "rates.0.rate", "must not be negative"),
    ({"user_filters": {"stage": {"min": 10, "mx": 20}}}, "user_filters.stage.mx", "unknown key"),
    ({"payment_filters": {"merchant": {"shop_id": ["a"], "inverse": True}}}, "payment_filters.merchant.inverse",
     "unknown key"),
    ({"ends_at": "2026-09-01T00:00:00Z"}, "ends_at", "ends_at must be after starts_at"),
    ({"starts_at": "yesterday"}, "starts_at", "RFC 3339"),
    ({"upper_limit": -1}, "upper_limit", "non-negative"),
])
def test_bad_campaigns_are_400_naming_the_field(api_client, change, field, message):
    response = api_client.post("/api/campaigns", {**BODY, **change}, format="json")
    assert response.status_code == 400
    assert response.json()["field"] == field and message in response.json()["error"]
    assert not Campaign.objects.exists()


def test_unknown_campaign_is_404(api_client):
    assert api_client.get("/api/campaigns/999").json() == {"error": "campaign 999 does not exist",
                                                           "field": "campaign_id"}


def test_schema_documents_the_estimate(client):
    schema = client.get("/api/schema/").content.decode()
    assert "/api/campaigns/estimate" in schema and "campaigns_estimate" in schema
