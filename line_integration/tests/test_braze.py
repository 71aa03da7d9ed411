"""POST /line/braze/webhook: auth, validation naming the field, one row per (dispatch_id, user_id)."""

import pytest

from line_integration.models import OutboundMessage
from line_integration.services import template_save
from mercari_ops.common.errors import ValidationFailed

pytestmark = pytest.mark.django_db

BODY = {"user_id": "c-1", "dispatch_id": "d-1", "campaign_id": "braze-cmp-9", "template": "saved_search_new_items",
        "params": {"search_id": "s-5"}}


def test_linked_customer_is_queued_once_even_when_braze_repeats(braze, text_template, link_customers):
    link_customers(["c-1"])
    first, second = braze(BODY), braze(BODY)
    assert (first.status_code, first.json()) == (202, {"status": "queued"})
    assert (second.status_code, second.json()) == (202, {"status": "queued"})
    message = OutboundMessage.objects.get()
    assert (message.status, message.line_user_id != "", message.params) == ("queued", True, {"search_id": "s-5"})


def test_not_linked_customer_is_skipped(braze, text_template):
    response = braze(BODY)
    assert (response.status_code, response.json()) == (202, {"status": "skipped", "reason": "not_linked"})
    assert braze(BODY).json() == {"status": "skipped", "reason": "not_linked"}
    assert OutboundMessage.objects.get().status == "skipped"


@pytest.mark.parametrize("field", ["user_id", "dispatch_id", "template"])
def test_missing_field_is_400_naming_it(braze, text_template, field):
    response = braze({k: v for k, v in BODY.items() if k != field})
    assert response.status_code == 400 and response.json()["field"] == field
    assert not OutboundMessage.objects.exists()


def test_unknown_template_is_400_naming_it(braze, text_template, link_customers):
    link_customers(["c-1"])
    response = braze({**BODY, "template": "no_such_template"})
    assert response.status_code == 400
    assert response.json() == {"error": "unknown template 'no_such_template'", "field": "template"}


def test_bad_json_and_wrong_types_are_400(braze, text_template):
    assert braze(b"{not json").status_code == 400
    response = braze({**BODY, "params": "x"})
    assert (response.status_code, response.json()["field"]) == (400, "params")


def test_wrong_or_missing_token_is_401_and_stores_nothing(braze, text_template, client):
    assert braze(BODY, token="wrong").status_code == 401
    assert client.post("/line/braze/webhook", data=BODY, content_type="application/json").status_code == 401
    assert not OutboundMessage.objects.exists()


def test_template_is_validated_against_the_line_spec_on_save():
    with pytest.raises(ValidationFailed) as caught:
        template_save(name="broken", messages=[{"type": "text", "txt": "{x}"}])
    assert caught.value.field == "messages[0].text"  # LINE names the missing property
    with pytest.raises(ValidationFailed):
        template_save(name="broken", messages=[{"type": "flex", "altText": "a", "contents": {"type": "nope"}}])
    template = template_save(name="ok", messages=[{"type": "text", "text": "Hello {name}"}])
    assert template.pk
