"""The change request page's generic display: changed fields first and alone, values formatted, the kind's own
renderers and rejection hook used when it registers them."""

import re

import pytest
from django.contrib.auth.models import Group
from django.utils import translation
from django.utils.html import format_html

from mercari_ops.common.approvals import change_request_create, change_request_reject, register_change_kind
from mercari_ops.common.approvals.display import diff_html, value_text
from mercari_ops.common.roles import MARKETERS
from mercari_ops.common.tests.test_approvals import APPROVERS, roles, target, user  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db
KIND = "test.group_settings"
REJECTED: list[int] = []

register_change_kind(
    KIND, target_type="auth.group", label="Change a group's settings", apply=lambda *, change: None,
    describe=lambda *, target_id, payload: ("group", payload["before"], payload["after"]),
    fingerprint=lambda *, target_id, payload: "same",
    preview=lambda *, target_id, payload: {"members": 1234},
    render_preview=lambda figures: format_html("<p class='kind-figures'>{} members</p>", f"{figures['members']:,}"),
    format_value=lambda key, value: f"{value} %" if key == "share" else None,
    on_reject=lambda *, change: REJECTED.append(change.pk),
)
BEFORE = {"name": "a", "cap": 12000, "starts_at": "2026-11-30T15:00:00+00:00", "share": 5,
          "filters": {"stages": [10, 20], "inner": True}}
AFTER = {**BEFORE, "cap": 15000, "starts_at": "2026-12-01T15:00:00+00:00", "share": 7}


def test_only_changed_fields_are_in_the_diff_table_the_rest_folded():
    with translation.override("en"):
        html = str(diff_html(BEFORE, AFTER))
    changed, folded = html.split('<details class="change-diff-all">', 1)
    assert re.findall(r'<th scope="row">([^<]+)</th>', changed) == ["cap", "starts_at", "share"]
    assert "Show all fields (3 unchanged)" in folded and '<th scope="row">name</th>' in folded
    # integers with separators; times in Tokyo wall time (UTC 15:00 is midnight the next day)
    assert "12,000" in changed and "15,000" in changed
    assert "2026-12-01 00:00 JST" in changed and "2026-12-02 00:00 JST" in changed and "+00:00" not in html
    assert "10, 20" in folded  # a list of scalars as a list, not a JSON dump


def test_no_difference_says_so():
    with translation.override("en"):
        assert "No field differs." in str(diff_html({"a": 1}, {"a": 1}))


def test_generic_values():
    with translation.override("en"):
        assert value_text(True) == "yes"
    assert value_text(None) == "\u2014"
    assert "<pre" in str(value_text({"a": {"b": 1}}))  # nested JSON pretty-printed


def test_the_kind_formats_its_values_and_draws_its_figures(client, roles, target):  # noqa: F811
    change = change_request_create(kind=KIND, target_id=str(target.pk), requested_by="mika",
                                   payload={"before": BEFORE, "after": AFTER})
    client.force_login(user("mika", MARKETERS))
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    assert "5 %" in page and "7 %" in page
    assert "<p class='kind-figures'>1,234 members</p>" in page and "<td>members</td>" not in page


def test_a_rejection_calls_the_kinds_hook_inside_the_decision(roles, target):  # noqa: F811
    change = change_request_create(kind=KIND, target_id=str(target.pk), requested_by="mika",
                                   payload={"before": BEFORE, "after": {**AFTER, "cap": 1}})
    change_request_reject(request_id=change.pk, by=user("anna", APPROVERS))
    assert change.pk in REJECTED
    assert Group.objects.filter(pk=target.pk, name="team-a").exists()
