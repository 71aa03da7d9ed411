"""Four eyes in core: a change request is applied only when a second person with the approver role approves it.

The kind used here renames an auth group (core must not import apps): its fingerprint is the group's name.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import translation

from mercari_ops.common.approvals import (
    APPROVERS,
    ApprovalRefused,
    ChangeRequestStale,
    approver_group_sync,
    change_request_approve,
    change_request_create,
    change_request_reject,
    change_request_withdraw,
    register_change_kind,
)
from mercari_ops.common.approvals.admin import diff_rows
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.models import AuditLogEntry
from mercari_ops.common.roles import MARKETERS, OPERATORS, role_permissions_sync

pytestmark = pytest.mark.django_db
KIND = "test.group_rename"


@pytest.fixture(autouse=True)
def _english():
    """The services' refusals as the English admin shows them (outside a request the default is Japanese)."""
    with translation.override("en"):
        yield


def _apply(*, change):
    if change.payload["name"] == "refused":
        raise ValidationFailed("this name is refused", "name")
    Group.objects.filter(pk=int(change.target_id)).update(name=change.payload["name"])


register_change_kind(
    KIND, target_type="auth.group", label="Rename a group", apply=_apply,
    describe=lambda *, target_id, payload: (Group.objects.get(pk=int(target_id)).name,
                                            {"name": Group.objects.get(pk=int(target_id)).name},
                                            {"name": payload["name"]}),
    fingerprint=lambda *, target_id, payload: Group.objects.get(pk=int(target_id)).name,
    preview=lambda *, target_id, payload: {"letters": len(payload["name"])},
)


def user(name, *groups):
    account = get_user_model().objects.create_user(name, password="pw-123456789", is_staff=True)
    for group in groups:
        account.groups.add(Group.objects.get(name=group))
    return account


@pytest.fixture
def roles():
    role_permissions_sync()
    approver_group_sync()


@pytest.fixture
def target():
    return Group.objects.create(name="team-a")


def request_rename(target, by="mika", name="team-b"):
    return change_request_create(kind=KIND, target_id=str(target.pk), payload={"name": name}, requested_by=by)


def test_a_request_changes_nothing_and_records_diff_preview_and_audit(target):
    change = request_rename(target)
    target.refresh_from_db()
    assert target.name == "team-a"
    assert (change.status, change.before, change.after, change.preview) == (
        "pending", {"name": "team-a"}, {"name": "team-b"}, {"letters": 6})
    assert AuditLogEntry.objects.get(action="change_request.create").actor == "mika"
    # the same proposal while pending is the same request
    assert request_rename(target).pk == change.pk


def test_the_requester_cannot_approve_their_own_request_even_as_approver(roles, target):
    mika = user("mika", APPROVERS)
    change = request_rename(target, by="mika")
    with pytest.raises(ApprovalRefused, match="own change request"):
        change_request_approve(request_id=change.pk, by=mika)
    target.refresh_from_db()
    change.refresh_from_db()
    assert (target.name, change.status) == ("team-a", "pending")


def test_marketers_and_operators_cannot_approve(roles, target):
    change = request_rename(target, by="mika")
    for person in (user("mark", MARKETERS), user("olga", OPERATORS)):
        with pytest.raises(ApprovalRefused, match="only an approver"):
            change_request_approve(request_id=change.pk, by=person)
    target.refresh_from_db()
    assert target.name == "team-a"


def test_a_second_approver_applies_it_and_the_audit_log_says_who(roles, target):
    change = request_rename(target, by="mika")
    change = change_request_approve(request_id=change.pk, by=user("anna", APPROVERS), note="ok")
    target.refresh_from_db()
    assert (target.name, change.status, change.decided_by, change.decision_note) == ("team-b", "applied", "anna",
                                                                                     "ok")
    approved = AuditLogEntry.objects.get(action="change_request.approve")
    assert (approved.actor, approved.target_type, approved.target_id) == ("anna", "auth.group", str(target.pk))
    assert approved.before == {"name": "team-a"} and "requested by mika" in approved.note
    with pytest.raises(ApprovalRefused, match="already"):
        change_request_approve(request_id=change.pk, by=user("bert", APPROVERS))


def test_superusers_are_approvers(target):
    change = request_rename(target, by="mika")
    root = get_user_model().objects.create_superuser("root", password="pw-123456789")
    assert change_request_approve(request_id=change.pk, by=root).status == "applied"


def test_a_rejected_request_leaves_nothing_changed(roles, target):
    change = request_rename(target, by="mika")
    change = change_request_reject(request_id=change.pk, by=user("anna", APPROVERS), note="not now")
    target.refresh_from_db()
    assert (target.name, change.status, change.decision_note) == ("team-a", "rejected", "not now")
    assert AuditLogEntry.objects.get(action="change_request.reject").actor == "anna"


def test_a_stale_request_is_refused_marked_and_applies_nothing(roles, target):
    change = request_rename(target, by="mika")
    Group.objects.filter(pk=target.pk).update(name="team-renamed-meanwhile")
    with pytest.raises(ChangeRequestStale):
        change_request_approve(request_id=change.pk, by=user("anna", APPROVERS))
    target.refresh_from_db()
    change.refresh_from_db()
    assert (target.name, change.status) == ("team-renamed-meanwhile", "stale")
    assert AuditLogEntry.objects.filter(action="change_request.stale").exists()


def test_a_change_the_app_refuses_is_marked_failed_and_nothing_applied(roles, target):
    change = request_rename(target, by="mika", name="refused")
    with pytest.raises(ApprovalRefused, match="this name is refused"):
        change_request_approve(request_id=change.pk, by=user("anna", APPROVERS))
    change.refresh_from_db()
    target.refresh_from_db()
    assert (change.status, change.error, target.name) == ("failed", "this name is refused", "team-a")


def test_only_the_requester_withdraws(roles, target):
    change = request_rename(target, by="mika")
    with pytest.raises(ApprovalRefused):
        change_request_withdraw(request_id=change.pk, by=user("anna", APPROVERS))
    assert change_request_withdraw(request_id=change.pk, by=user("mika", MARKETERS)).status == "withdrawn"


def test_only_approvers_hold_the_approve_permission(roles):
    approve = Permission.objects.get(codename="approve_change")
    assert Group.objects.get(name=APPROVERS).permissions.filter(pk=approve.pk).exists()
    assert not Group.objects.get(name=OPERATORS).permissions.filter(pk=approve.pk).exists()
    assert not Group.objects.get(name=MARKETERS).permissions.filter(pk=approve.pk).exists()


def test_diff_rows_compare_leaf_by_leaf_changed_first():
    rows = diff_rows({"name": "a", "rates": [{"rate": "1.0"}], "cap": 5}, {"name": "a", "rates": [{"rate": "2.0"}],
                                                                         "cap": 5})
    assert rows[0] == ("rates.0.rate", "1.0", "2.0", True)
    assert ("name", "a", "a", False) in rows


def test_request_page_shows_diff_and_buttons_to_another_approver_only(client, roles, target):
    change = request_rename(target, by="mika")
    client.force_login(user("mika", MARKETERS))
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    assert "team-b" in page and "letters" in page
    assert "Approve and apply" not in page and "Withdraw my request" in page
    client.force_login(user("anna", APPROVERS))
    page = client.get(f"/admin/common/changerequest/{change.pk}/change/").content.decode()
    assert "Approve and apply" in page and "Reject" in page
    listing = client.get("/admin/common/changerequest/?status__exact=pending").content.decode()
    assert f"/admin/common/changerequest/{change.pk}/change/" in listing
    # a GET never decides; the POST does
    assert client.get(f"/admin/common/changerequest/{change.pk}/approve/").status_code == 405
    response = client.post(f"/admin/common/changerequest/{change.pk}/approve/", {"note": "fine"})
    assert response.status_code == 302
    change.refresh_from_db()
    target.refresh_from_db()
    assert (change.status, change.decided_by, target.name) == ("applied", "anna", "team-b")


def test_the_requester_posting_approve_gets_an_error_and_nothing_changes(client, roles, target):
    change = request_rename(target, by="mika")
    client.force_login(user("mika", APPROVERS))
    response = client.post(f"/admin/common/changerequest/{change.pk}/approve/", follow=True)
    assert "cannot decide your own change request" in response.content.decode()
    change.refresh_from_db()
    assert change.status == "pending"


def test_the_admin_index_counts_requests_waiting_for_an_approver(client, roles, target):
    request_rename(target, by="mika")
    client.force_login(get_user_model().objects.create_superuser("root", password="pw-123456789"))
    page = client.get("/admin/").content.decode()
    assert "Change requests waiting for an approver" in page
    assert "/admin/common/changerequest/?status__exact=pending" in page
