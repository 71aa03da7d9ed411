"""The campaign form's live estimate and merchant search (campaigns/admin/form_tools.py).

The estimate of the form's unsaved values must answer what the estimate API answers once the same campaign
is active, for a customer of the sample's stage and card status: both come from campaigns/rules.py.
"""

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from campaigns.models import Campaign
from campaigns.services import campaign_create

pytestmark = pytest.mark.django_db
ESTIMATE = "/admin/campaigns/campaign/form/estimate/"
MERCHANTS = "/admin/campaigns/campaign/form/merchants/"
API = "/api/campaigns/estimate"

INNER = {"user_filters": {"mercard_status": [2, 3]}, "payment_filters": {"mercari_inner_payment": True},
         "rates": [(10, 19, "1.0"), (20, 29, "2.0"), (30, 39, "3.0")], "upper_limit": None}
OUTER = {"user_filters": {"mercard_status": [2, 3]},
         "payment_filters": {"mercari_outer_payment": True, "merchant": {"shop_id": ["shop-88"], "invert": True},
                             "excluded_categories": ["e_money_charge"]},
         "rates": [(10, 49, "0.5")], "upper_limit": 500}
ONLY_ID = {"user_filters": {}, "payment_filters": {"payment_methods": ["id"]}, "rates": [(10, 49, "1.5")],
           "upper_limit": None}


def _user(client, name: str, group: str | None):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user(name, password="pw-123456789", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


@pytest.fixture
def marketer(client):
    return _user(client, "mika", "marketers")


def _period():
    now = timezone.now().replace(microsecond=0)
    return now - timedelta(days=1), now + timedelta(days=30)


def _split(moment) -> list[str]:
    """As the admin's split date/time widget holds it: local date and time."""
    local = timezone.localtime(moment)
    return [local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")]


def _form_values(campaign: dict, starts_at, ends_at) -> dict:
    """The campaign as the script reads it from the form: every value a string, filters as typed JSON."""
    return {"name": "Autumn", "starts_at": _split(starts_at), "ends_at": _split(ends_at),
            "upper_limit": "" if campaign["upper_limit"] is None else str(campaign["upper_limit"]),
            "user_filters": json.dumps(campaign["user_filters"]),
            "payment_filters": json.dumps(campaign["payment_filters"]),
            "rates": [{"stage_from": str(a), "stage_to": str(b), "rate": r} for a, b, r in campaign["rates"]]}


def _post(client, body, **extra):
    return client.post(ESTIMATE, json.dumps(body), content_type="application/json", **extra)


@pytest.mark.parametrize("campaign, stage, card_status, sample", [
    (INNER, 30, 2, {"amount": 3000, "channel": "mercari"}),
    (INNER, 10, 3, {"amount": 12345, "channel": "mercari", "merchant_id": "m-mercari"}),
    (INNER, 20, 2, {"amount": 5000, "channel": "outside", "merchant_id": "m-mercari"}),  # marketplace master
    (INNER, 30, 1, {"amount": 3000, "channel": "mercari"}),  # card status not eligible
    (INNER, 45, 2, {"amount": 3000, "channel": "mercari"}),  # no rate for the stage
    (INNER, 10, 2, {"amount": 3000, "channel": "outside"}),  # channel
    (INNER, 10, 2, {"amount": -500, "channel": "mercari"}),  # a refund
    (OUTER, 10, 2, {"amount": 10_000_000, "channel": "outside", "merchant_id": "m-77"}),  # over the cap
    (OUTER, 10, 2, {"amount": 3000, "channel": "outside", "merchant_id": "m-88"}),  # merchant filter
    (OUTER, 10, 2, {"amount": 3000, "channel": "outside", "merchant_id": "m-charge"}),  # category
    (OUTER, 10, 2, {"amount": 3000, "channel": "outside", "merchant_id": "m-nobody"}),  # unknown merchant
    (ONLY_ID, 10, 2, {"amount": 3000, "channel": "outside", "payment_method": "apple_pay"}),
    (ONLY_ID, 10, 2, {"amount": 3000, "channel": "outside", "merchant_id": "m-77-id", "payment_method": "id"}),
])
def test_the_form_estimate_answers_what_the_estimate_api_answers(marketer, api_client, merchants, customer,
                                                                 campaign, stage, card_status, sample):
    # given: the same values, once in the form (unsaved) and once as an active campaign
    starts_at, ends_at = _period()
    customer("c-1", stage=stage, card_status=card_status)
    body = {"campaign": _form_values(campaign, starts_at, ends_at),
            "sample": {**sample, "stage": stage, "card_status": card_status}}
    # when: the form asks first (nothing is active yet), then the campaign goes live and the API is asked
    form = _post(marketer, body)
    live = campaign_create(name="live", starts_at=starts_at, ends_at=ends_at, rates=campaign["rates"],
                           user_filters=campaign["user_filters"], payment_filters=campaign["payment_filters"],
                           upper_limit=campaign["upper_limit"], status=Campaign.Status.ACTIVE)
    api = api_client.post(API, {"customer_id": "c-1", **sample}, format="json").json()
    # then
    assert form.status_code == 200, form.content
    answer = form.json()
    assert (answer["eligible"], answer["points"], answer["rate"], answer["reason"]) == (
        api["eligible"], api["points"], api["rate"], api["reason"])
    assert api["campaign_id"] in (live.pk, None)


def test_the_answer_reads_as_yen_points_rate_and_stage_name(marketer, merchants):
    from loyalty.tests.factories import publish_rules

    publish_rules()
    starts_at, ends_at = _period()
    body = {"campaign": _form_values({**INNER, "upper_limit": 150}, starts_at, ends_at),
            "sample": {"amount": 10_000, "channel": "mercari", "stage": 30, "card_status": 3}}
    answer = _post(marketer, body).json()
    assert answer["points"] == 300 and answer["points_within_cap"] == 150
    assert answer["text"].startswith("¥10,000 → 300 pt (3.0%, stage Gold)")
    assert "150 pt" in answer["text"]


def test_a_purchase_earning_nothing_says_why(marketer, merchants):
    starts_at, ends_at = _period()
    body = {"campaign": _form_values(INNER, starts_at, ends_at),
            "sample": {"amount": 10_000, "channel": "mercari", "stage": 10, "card_status": None}}
    answer = _post(marketer, body).json()
    assert (answer["points"], answer["reason"]) == (0, "card_status_not_eligible")
    assert answer["text"] == "¥10,000 → 0 pt: " + answer["reason_text"] and answer["reason_text"]


def test_a_merchant_master_picked_in_the_form_is_evaluated_as_that_master(marketer, merchants):
    starts_at, ends_at = _period()
    sample = {"amount": 3000, "channel": "outside", "stage": 10, "card_status": 2}
    campaign = _form_values(OUTER, starts_at, ends_at)
    assert _post(marketer, {"campaign": campaign, "sample": {**sample, "master_id": "shop-77"}}).json()["points"] == 15
    assert _post(marketer, {"campaign": campaign, "sample": {**sample, "master_id": "shop-88"}}).json()["reason"] == \
        "merchant_not_eligible"
    assert _post(marketer, {"campaign": campaign, "sample": {**sample, "master_id": "nope"}}).json()["reason"] == \
        "unknown_merchant"


@pytest.mark.parametrize("change, field", [
    ({"payment_filters": '{"merchant": {"invert": true}}'}, "payment_filters.merchant.shop_id"),
    ({"payment_filters": '{"colour": "red"}'}, "payment_filters.colour"),
    ({"user_filters": '{"mercard_status": [2, 3'}, "user_filters"),
    ({"user_filters": '{"stage": {"min": 40, "max": 10}}'}, "user_filters.stage.min"),
    ({"payment_filters": '{"mercari_inner_payment": false}'}, "payment_filters.mercari_inner_payment"),
    ({"rates": [{"stage_from": "10", "stage_to": "19", "rate": "1.25"}]}, "rates.0.rate"),
    ({"rates": [{"stage_from": "ten", "stage_to": "19", "rate": "1.0"}]}, "rates.0.stage_from"),
    ({"upper_limit": "-3"}, "upper_limit"),
    ({"ends_at": ["2020-01-01", "00:00:00"]}, "ends_at"),
    ({"starts_at": ["someday", ""]}, "starts_at"),
])
def test_invalid_form_values_are_a_400_naming_the_field(marketer, change, field):
    starts_at, ends_at = _period()
    body = {"campaign": {**_form_values(INNER, starts_at, ends_at), **change},
            "sample": {"amount": 3000, "channel": "mercari", "stage": 10, "card_status": 2}}
    response = _post(marketer, body)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_an_invalid_sample_is_a_400_naming_the_field(marketer):
    starts_at, ends_at = _period()
    body = {"campaign": _form_values(INNER, starts_at, ends_at),
            "sample": {"amount": "lots", "channel": "mercari", "stage": 10}}
    response = _post(marketer, body)
    assert (response.status_code, response.json()["field"]) == (400, "sample.amount")


def test_the_estimate_changes_nothing(marketer, merchants):
    starts_at, ends_at = _period()
    body = {"campaign": _form_values(INNER, starts_at, ends_at),
            "sample": {"amount": 3000, "channel": "mercari", "stage": 10, "card_status": 2}}
    assert _post(marketer, body).status_code == 200
    assert not Campaign.objects.exists()


def test_anonymous_is_sent_to_the_login_page(client):
    response = _post(client, {"campaign": {}, "sample": {}})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    response = client.get(MERCHANTS, {"q": "shop"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_staff_without_campaign_permissions_is_refused(client, merchants):
    _user(client, "nobody", None)
    assert _post(client, {"campaign": {}, "sample": {}}).status_code == 403
    assert client.get(MERCHANTS, {"q": "shop"}).status_code == 403


def test_the_estimate_needs_the_csrf_token(merchants):
    browser = _user(Client(enforce_csrf_checks=True, HTTP_ACCEPT_LANGUAGE="en"), "mika", "marketers")
    starts_at, ends_at = _period()
    body = {"campaign": _form_values(INNER, starts_at, ends_at),
            "sample": {"amount": 3000, "channel": "mercari", "stage": 10, "card_status": 2}}
    assert _post(browser, body).status_code == 403
    page = browser.get("/admin/campaigns/campaign/add/")
    token = page.cookies["csrftoken"].value
    assert _post(browser, body, HTTP_X_CSRFTOKEN=token).status_code == 200


def test_merchant_search_by_name_id_and_merchant_id(marketer, merchants):
    def found(**params):
        response = marketer.get(MERCHANTS, params)
        assert response.status_code == 200
        return [m["id"] for m in response.json()["results"]]

    assert found(q="corner") == ["shop-77"]
    assert found(q="SHOP-8") == ["shop-88"]
    assert found(q="m-77-id") == ["shop-77"]  # a merchant ID of the bills finds its master
    assert found(ids="shop-88,charge-1,nope") == ["charge-1", "shop-88"]
    first = marketer.get(MERCHANTS, {"q": "corner"}).json()["results"][0]
    assert first == {"id": "shop-77", "name": "Corner shop", "is_marketplace": False, "category": ""}


def test_the_form_carries_the_pickers_and_the_estimate_and_still_saves(marketer, merchants):
    from loyalty.tests.factories import publish_rules

    publish_rules()
    page = marketer.get("/admin/campaigns/campaign/add/").content.decode()
    for element in ('id="campaign-estimate"', 'id="filter-picker-user_filters"', 'id="filter-picker-payment_filters"',
                    "campaigns/admin/campaign_form.js", "campaigns/admin/filter_picker.js"):
        assert element in page
    marker = 'id="id_payment_filters-choices" type="application/json">'
    choices = json.loads(page.split(marker)[1].split("</script>")[0])
    assert {"value": 30, "label": "Gold"} in choices["stages"]
    assert {"value": 2, "label": "screening done"} in choices["card_statuses"]
    assert "e_money_charge" in choices["categories"] and "apple_pay" in choices["payment_methods"]
    # the sample inputs have no names: saving posts the campaign alone, as before
    assert 'name="sample' not in page
    response = marketer.post("/admin/campaigns/campaign/add/", {
        "name": "Autumn", "status": "draft", "starts_at_0": "2026-10-01", "starts_at_1": "00:00:00",
        "ends_at_0": "2026-11-01", "ends_at_1": "00:00:00", "upper_limit": "",
        "user_filters": '{"mercard_status": [2, 3]}', "payment_filters": '{"merchant": {"shop_id": ["shop-77"]}}',
        "rates-TOTAL_FORMS": "1", "rates-INITIAL_FORMS": "0", "rates-0-stage_from": "10", "rates-0-stage_to": "20",
        "rates-0-rate": "1.0", "versions-TOTAL_FORMS": "0", "versions-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Campaign.objects.get().payment_filters == {"merchant": {"shop_id": ["shop-77"]}}


def test_a_sample_paid_outside_the_period_earns_nothing(marketer):
    starts_at, ends_at = _period()
    campaign = _form_values(INNER, starts_at, ends_at)
    sample = {"amount": 3000, "channel": "mercari", "stage": 10, "card_status": 2}
    inside = _post(marketer, {"campaign": campaign, "sample": {**sample, "paid_at": _split(starts_at)}}).json()
    outside = _post(marketer, {"campaign": campaign, "sample": {**sample, "paid_at": _split(ends_at)}}).json()
    assert inside["points"] == 30
    assert (outside["points"], outside["reason"]) == (0, "outside_campaign_period")
    bad = _post(marketer, {"campaign": campaign, "sample": {**sample, "paid_at": ["yesterday", ""]}})
    assert (bad.status_code, bad.json()["field"]) == (400, "sample.paid_at")


def test_the_change_page_of_a_saved_campaign_carries_them_too(marketer, merchants):
    starts_at, ends_at = _period()
    campaign = campaign_create(name="saved", starts_at=starts_at, ends_at=ends_at, rates=INNER["rates"],
                               user_filters=INNER["user_filters"], payment_filters=INNER["payment_filters"])
    page = marketer.get(f"/admin/campaigns/campaign/{campaign.pk}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="campaign-estimate"' in html and 'id="filter-picker-payment_filters"' in html
    assert "mercard_status" in html  # the saved JSON is in the textarea the picker reads
