"""The stage-rules form: errors name their path once; Preview shows who would move and changes nothing."""

import json
import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from loyalty.models import Customer, RecomputeJob, StageChange, StageRuleVersion
from loyalty.rules import definition_validate
from loyalty.services import activity_apply
from loyalty.tests.factories import RULES, event, publish_rules
from mercari_ops.common.errors import ValidationFailed

pytestmark = pytest.mark.django_db
ADD = "/admin/loyalty/stageruleversion/add/"
PREVIEW = "/admin/loyalty/stageruleversion/preview/"
BAD_COMBINE = {**RULES, "stages": [{"stage": 10, "name": "R"},
                                   {"stage": 20, "name": "S", "combine": "some", "thresholds": {"buy_count": 1}}]}


def _login(client, group: str | None):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user(f"user-{group}", password="pw-123456789", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


@pytest.fixture
def marketer(client):
    return _login(client, "marketers")


@pytest.mark.parametrize("change", [
    {"window_months": 0}, {"extra": 1}, {"stages": []},
    {"stages": [{"stage": 10, "name": "R", "thresholds": {"buy_amount": 1}}]},
    {"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S", "thresholds": {"refunds": 1}}]},
    {"stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S"}]},
    BAD_COMBINE,
])
def test_every_rules_error_names_its_path_once_at_the_start(change):
    with pytest.raises(ValidationFailed) as caught:
        definition_validate({**RULES, **change})
    message, field = caught.value.message, caught.value.field
    assert message.startswith(f"{field}: ")
    assert message.count(field) == 1, message


def test_the_form_prints_the_error_path_once(marketer):
    response = marketer.post(ADD, {"definition": json.dumps(BAD_COMBINE), "note": ""})
    assert response.status_code == 200
    errors = re.findall(r'<ul class="errorlist[^"]*"[^>]*>(.*?)</ul>', response.content.decode(), re.S)
    assert errors and "stages.1.combine" in errors[0]
    assert response.content.decode().count("stages.1.combine") == 1
    assert not StageRuleVersion.objects.exists()


def test_the_add_form_has_the_preview_button(marketer):
    page = marketer.get(ADD).content.decode()
    assert 'id="rules-preview"' in page and 'id="rules-preview-button"' in page
    assert f'formaction="{PREVIEW}"' in page and "loyalty/admin/rules_preview.js" in page


@pytest.fixture
def customers():
    """Rules v1 (Regular 10 .. Platinum 40) and three customers: Silver, Gold (by sales count) and Regular."""
    publish_rules()
    activity_apply(events=[event(customer_id="c-silver", amount=6000), event(customer_id="c-silver", amount=6000)])
    activity_apply(events=[event(customer_id="c-gold", kind="sell", amount=100) for _ in range(10)])
    activity_apply(events=[event(customer_id="c-regular", amount=100)])
    stages = dict(Customer.objects.values_list("customer_id", "stage"))
    assert stages == {"c-silver": 20, "c-gold": 30, "c-regular": 10}
    return stages


def _state():
    return (list(Customer.objects.order_by("pk").values_list("customer_id", "stage", "rules_stage")),
            StageRuleVersion.objects.count(), RecomputeJob.objects.count(), StageChange.objects.count())


def test_preview_shows_who_would_move_and_changes_nothing(marketer, customers):
    # given: Silver needs one purchase of 100 yen (c-regular moves up), Gold needs 20 sales (c-gold moves down)
    proposed = json.loads(json.dumps(RULES))
    proposed["stages"][1]["thresholds"] = {"buy_amount": 100}
    proposed["stages"][2]["thresholds"] = {"sell_count": 20}
    before = _state()
    # when: the form's script asks for the fragment
    response = marketer.post(PREVIEW, {"definition": json.dumps(proposed), "note": ""}, HTTP_X_RULES_PREVIEW="1")
    # then
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-customers="3" data-up="1" data-down="1" data-unchanged="1"' in html
    moves = re.search(r'<table class="rules-preview-moves">(.*?)</table>', html, re.S).group(1)
    rows = [re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip()
            for row in re.findall(r"<tr>(.*?)</tr>", moves, re.S)[1:]]
    assert sorted(rows) == ["Gold (30) Regular (10) down 1", "Regular (10) Silver (20) up 1"]
    assert "<svg" in html and "<html" not in html  # the chart, in a fragment
    assert _state() == before


def test_preview_without_the_script_is_a_whole_page(marketer, customers):
    before = _state()
    response = marketer.post(PREVIEW, {"definition": json.dumps(RULES), "_preview": "1"})
    html = response.content.decode()
    assert response.status_code == 200 and "<html" in html and 'id="rules-preview"' in html
    assert 'data-customers="3" data-up="0" data-down="0" data-unchanged="3"' in html
    assert _state() == before


def test_preview_of_invalid_rules_names_the_path_once(marketer, customers):
    response = marketer.post(PREVIEW, {"definition": json.dumps(BAD_COMBINE)}, HTTP_X_RULES_PREVIEW="1")
    assert response.status_code == 400
    assert response.content.decode().count("stages.1.combine") == 1
    response = marketer.post(PREVIEW, {"definition": "{not json"}, HTTP_X_RULES_PREVIEW="1")
    assert response.status_code == 400 and "definition" in response.content.decode()


def test_preview_is_refused_to_anonymous_and_to_staff_without_rules_permissions(client):
    response = client.post(PREVIEW, {"definition": json.dumps(RULES)})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    _login(client, None)
    assert client.post(PREVIEW, {"definition": json.dumps(RULES)}).status_code == 403
