"""Braze webhook bodies that can never succeed (issue 16, points 1 and 3): a 400 naming the field, never a 500 or
a 503, alone and with group commit."""

import json

import pytest

from line_integration.models import OutboundMessage

pytestmark = pytest.mark.django_db

BODY = {"user_id": "c-1", "dispatch_id": "d-1", "campaign_id": "braze-cmp-9", "template": "saved_search_new_items",
        "params": {"search_id": "s-5"}}


@pytest.fixture(params=[False, True], ids=["alone", "group-commit"])
def group_commit(request, settings):
    settings.GROUP_COMMIT = request.param
    return request.param


@pytest.mark.parametrize("body, field", [
    ({**BODY, "user_id": "c-\u0000"}, "user_id"),
    ({**BODY, "dispatch_id": "d-\u0000"}, "dispatch_id"),
    ({**BODY, "params": {"search_id": "s-\u0000"}}, "params.search_id"),
    ({**BODY, "params": {"k\u0000": "v"}}, "params.k\\u0000"),
    ({**BODY, "dispatch_id": "\ud800"}, "dispatch_id"),
    ({**BODY, "user_id": "\udc00-1"}, "user_id"),
    ({**BODY, "params": {"n": float("inf")}}, "body"),
])
def test_unstorable_characters_are_400_naming_the_field(braze, text_template, link_customers, group_commit,
                                                        body, field):
    link_customers(["c-1"])
    response = braze(json.dumps(body))
    assert (response.status_code, response.json()["field"]) == (400, field)
    assert not OutboundMessage.objects.exists()


@pytest.mark.parametrize("body", [
    '{"user_id": ' + "[" * 10_000 + "]" * 10_000 + "}",
    '{"params": ' + '{"a": ' * 10_000 + "1" + "}" * 10_000 + "}",
    b'{"user_id": "c-\xff"}',
    b"\x00",
])
def test_deep_or_undecodable_bodies_are_400(braze, text_template, group_commit, body):
    response = braze(body)
    assert (response.status_code, response.json()["field"]) == (400, "body")
    assert not OutboundMessage.objects.exists()


def test_a_valid_body_is_still_queued(braze, text_template, link_customers, group_commit):
    link_customers(["c-1"])
    response = braze({**BODY, "params": {"search_id": "検索-😀"}})
    assert (response.status_code, response.json()) == (202, {"status": "queued"})
    assert OutboundMessage.objects.get().params == {"search_id": "検索-😀"}
