"""The read API: keyset pages, children, actions, estimates, errors."""

import sys
import types
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from history.selectors import cursor_encode

from .factories import BASE, card_tree, payment_event

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"
URL = "/api/history/customers/{}/payments"


@pytest.fixture
def history(push):
    """c-1 with 25 purchases paid by card (alternately billed / repaid) and one outside card transaction."""
    for n in range(25):
        for event in card_tree(n, start=n * 10, repaid=n % 2 == 1):
            assert push(TOPIC, event).status_code == 204
    push(TOPIC, payment_event("mercard.transaction", "tx-out", minutes=1000, amount=4500,
                              merchant_name="Uniqlo", merchant_id="m-uniqlo", payment_method="id"))


def test_first_page_newest_first_with_children_and_actions(api_client, history):
    body = api_client.get(URL.format("c-1") + "?page_size=3").json()
    assert [e["payment_id"] for e in body["entries"]] == ["tx-out", "pur-24", "pur-23"]
    outside, billed_purchase, repaid_purchase = body["entries"]
    assert outside["children"] == [] and outside["parent_id"] is None
    assert outside["actions"] == []  # authorized, not billed yet
    card = billed_purchase["children"][0]
    assert (card["payment_id"], card["parent_id"], card["state"]) == ("tx-24", "pur-24", "billed")
    assert card["actions"] == [{"action": "repay", "amount": 3000, "method": "POST",
                                "href": "/api/history/payments/tx-24/repay"}]
    assert repaid_purchase["children"][0]["state"] == "repaid"
    assert repaid_purchase["children"][0]["actions"] == []
    assert body["next_cursor"]


def test_walking_every_page_returns_each_entry_once_in_order(api_client, history):
    seen, cursor = [], ""
    while True:
        body = api_client.get(URL.format("c-1"), {"page_size": 4, "cursor": cursor}).json()
        seen += [e["payment_id"] for e in body["entries"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["tx-out"] + [f"pur-{n}" for n in range(24, -1, -1)]


def test_entries_with_the_same_time_are_split_by_id_without_loss(api_client, push):
    for n in range(5):
        push(TOPIC, payment_event("merpay.payment", f"mp-{n}", minutes=0))
    first = api_client.get(URL.format("c-1"), {"page_size": 2}).json()
    rest = api_client.get(URL.format("c-1"), {"page_size": 10, "cursor": first["next_cursor"]}).json()
    assert [e["payment_id"] for e in first["entries"] + rest["entries"]] == [f"mp-{n}" for n in range(4, -1, -1)]


def test_page_costs_a_fixed_number_of_queries_whatever_its_size(api_client, history):
    api_client.get(URL.format("c-1"), {"page_size": 2})  # warm the token / catalog caches
    with CaptureQueriesContext(connection) as small:
        api_client.get(URL.format("c-1"), {"page_size": 2})
    with CaptureQueriesContext(connection) as large:
        api_client.get(URL.format("c-1"), {"page_size": 26})
    assert len(large.captured_queries) == len(small.captured_queries)  # no N+1 for children or estimates
    sql = " ".join(q["sql"] for q in large.captured_queries).upper()
    assert "OFFSET" not in sql and "COUNT(" not in sql


def fake_campaigns(monkeypatch, **functions):
    """Stand in for campaigns.selectors (it may not have landed yet): only its interface matters here."""
    import campaigns

    module = types.ModuleType("campaigns.selectors")
    module.__dict__.update(functions)
    monkeypatch.setitem(sys.modules, "campaigns.selectors", module)
    monkeypatch.setattr(campaigns, "selectors", module, raising=False)


def test_cashback_estimate_comes_from_campaigns_in_one_bulk_call(api_client, history, monkeypatch):
    calls = []

    def estimate_items(*, customer_id, items, now=None):
        calls.append((customer_id, items))
        return [{"eligible": True, "points": item["amount"] // 100, "rate": "1.0", "campaign_id": 7,
                 "reason": None} for item in items]

    fake_campaigns(monkeypatch, estimate_items=estimate_items)
    body = api_client.get(URL.format("c-1"), {"page_size": 2}).json()
    assert len(calls) == 1
    assert calls[0][1] == [
        {"amount": 4500, "channel": "outside", "merchant_id": "m-uniqlo", "payment_method": "id"},
        {"amount": 3000, "channel": "mercari", "merchant_id": "m-mercari", "payment_method": "mercard"},
    ]
    assert body["entries"][0]["cashback"]["points"] == 45
    assert body["entries"][1]["cashback"] is None  # a purchase has no cashback of its own
    assert body["entries"][1]["children"][0]["cashback"]["points"] == 30


def test_single_item_points_estimate_is_used_when_there_is_no_bulk_call(api_client, history, monkeypatch):
    def points_estimate(*, customer_id, amount, channel, merchant_id=None, payment_method=None):
        return {"eligible": False, "points": 0, "rate": None, "campaign_id": None, "reason": f"no {channel}"}

    fake_campaigns(monkeypatch, points_estimate=points_estimate)
    body = api_client.get(URL.format("c-1"), {"page_size": 1}).json()
    assert body["entries"][0]["cashback"]["reason"] == "no outside"


def test_a_failing_estimate_never_fails_the_history(api_client, history, monkeypatch):
    def estimate_items(**kwargs):
        raise RuntimeError("catalog not loaded")

    fake_campaigns(monkeypatch, estimate_items=estimate_items)
    response = api_client.get(URL.format("c-1"), {"page_size": 1})
    assert response.status_code == 200
    assert response.json()["entries"][0]["cashback"] is None


def test_unknown_customer_is_404(api_client, db):
    response = api_client.get(URL.format("c-nobody"))
    assert response.status_code == 404
    assert response.json() == {"error": "unknown customer c-nobody", "field": "customer_id"}


@pytest.mark.parametrize(("query", "field"), [
    ({"cursor": "not-a-cursor"}, "cursor"), ({"page_size": "x"}, "page_size"), ({"page_size": 0}, "page_size"),
    ({"page_size": 101}, "page_size"),
])
def test_malformed_query_is_400_naming_the_field(api_client, history, query, field):
    response = api_client.get(URL.format("c-1"), query)
    assert response.status_code == 400
    assert response.json()["field"] == field


def test_payment_detail_has_children_parent_and_transitions(api_client, history):
    body = api_client.get("/api/history/payments/tx-1").json()
    assert (body["parent_id"], body["customer_id"], body["state"]) == ("pur-1", "c-1", "repaid")
    assert [t["kind"] for t in body["transitions"]] == ["mercard.transaction", "mercard.billed",
                                                         "repayment.completed"]
    purchase = api_client.get("/api/history/payments/pur-1").json()
    assert [c["payment_id"] for c in purchase["children"]] == ["tx-1"]
    assert api_client.get("/api/history/payments/nope").status_code == 404


def test_api_needs_a_service_token(client, history):
    assert client.get(URL.format("c-1")).status_code == 401


def test_cursor_is_opaque_and_stable(api_client, history):
    from history.models import PaymentEntry

    entry = PaymentEntry.objects.get(payment_id="pur-20")
    body = api_client.get(URL.format("c-1"), {"page_size": 1,
                                              "cursor": cursor_encode(entry.occurred_at, entry.pk)}).json()
    assert [e["payment_id"] for e in body["entries"]] == ["pur-19"]


# --- the GET hot path answers what DRF's path answers --------------------------------------------

DRF_PATH = {"HTTP_ACCEPT": "application/json; q=1"}  # a parameter: the view hands the request to DRF


def both_paths(client, url, data=None, **headers):
    lean = client.get(url, data, **headers)
    drf = client.get(url, data, **headers, **DRF_PATH)
    assert (lean.status_code, lean.content) == (drf.status_code, drf.content)
    for name in ("Content-Type", "Allow", "WWW-Authenticate"):
        assert lean.headers.get(name) == drf.headers.get(name), name
    return lean


@pytest.mark.parametrize(("url", "query", "status"), [
    (URL.format("c-1"), {"page_size": 3}, 200),
    (URL.format("c-1"), {"page_size": 2, "cursor": cursor_encode(BASE + timedelta(minutes=125), 10**6)}, 200),
    (URL.format("c-1"), {"page_size": "x"}, 400),
    (URL.format("c-1"), {"cursor": "not-a-cursor"}, 400),
    (URL.format("c-nobody"), None, 404),
    ("/api/history/payments/tx-3", None, 200),
    ("/api/history/payments/nope", None, 404),
])
def test_lean_get_answers_exactly_as_drf(api_client, history, url, query, status):
    assert both_paths(api_client, url, query).status_code == status


@pytest.mark.parametrize("authorization", [None, "Token", "Token a b", "Token not-a-key", "Bearer x"])
def test_lean_get_refuses_what_drf_refuses(client, history, authorization):
    headers = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = both_paths(client, URL.format("c-1"), **headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert set(response.json()) == {"error", "field"}


def test_lean_get_refuses_an_inactive_service(client, history):
    from django.contrib.auth import get_user_model

    from mercari_ops.common.services import service_token_create

    key = service_token_create(name="retired")
    get_user_model().objects.filter(username="svc-retired").update(is_active=False)
    response = both_paths(client, URL.format("c-1"), HTTP_AUTHORIZATION=f"Token {key}")
    assert (response.status_code, response.json()["error"]) == (401, "User inactive or deleted.")


def test_lean_get_answers_503_when_the_database_fails(api_client, history, monkeypatch):
    from django.db import OperationalError

    from history import selectors

    def history_page(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(selectors, "history_page", history_page)
    response = both_paths(api_client, URL.format("c-1"))
    assert (response.status_code, response.json()) == (503, {"error": "database unavailable, retry later",
                                                            "field": None})


def test_other_media_types_are_still_negotiated(api_client, history):
    assert api_client.get(URL.format("c-1"), HTTP_ACCEPT="text/html").status_code == 406
    assert api_client.get(URL.format("c-1"), HTTP_ACCEPT="application/json; indent=2").content.startswith(b"{\n")


def test_times_are_written_as_isoformat_with_z_whatever_their_fraction(api_client, push):
    # given: one entry on a whole second, one with a fraction (0.0001 minute = 6 ms)
    push(TOPIC, payment_event("merpay.payment", "mp-whole", minutes=1))
    push(TOPIC, payment_event("merpay.payment", "mp-fraction", minutes=0.0001))
    # when
    entries = api_client.get(URL.format("c-1")).json()["entries"]
    # then
    assert [(e["occurred_at"], e["state_at"]) for e in entries] == [
        ("2026-10-01T09:01:00Z", "2026-10-01T09:01:00Z"),
        ("2026-10-01T09:00:00.006000Z", "2026-10-01T09:00:00.006000Z"),
    ]


def test_lean_get_checks_a_known_token_without_a_query(api_client, history):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    # given a service whose token was checked once
    assert api_client.get(URL.format("c-1")).status_code == 200
    # when it asks again
    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(URL.format("c-1")).status_code == 200
    # then the page costs its own statements only: the token came from the process's cache
    assert queries.captured_queries
    assert not [q for q in queries.captured_queries if "common_servicetoken" in q["sql"]]
