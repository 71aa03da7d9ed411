"""Four eyes on mass actions: above CHANGE_REQUEST_MASS_THRESHOLD a replay or discard waits for an approver;
at or below it runs at once and is audited. Also the LINE test message to many users."""

import pytest
from django.contrib.auth.models import Group, User

from mercari_ops.common.approvals import (
    APPROVERS,
    ApprovalRefused,
    ChangeRequestStale,
    approver_group_sync,
    change_request_approve,
)
from mercari_ops.common.models import AuditLogEntry, ChangeRequest
from mercari_ops.common.roles import OPERATORS, role_permissions_sync
from mercari_ops.inbox.models import DeadLetter

pytestmark = pytest.mark.django_db
LETTERS = "/admin/inbox/deadletter/"


@pytest.fixture
def people(client, settings):
    settings.CHANGE_REQUEST_MASS_THRESHOLD = 2
    role_permissions_sync()
    approver_group_sync()
    olga = User.objects.create_user("olga", password="pw", is_staff=True)
    olga.groups.add(Group.objects.get(name=OPERATORS))
    anna = User.objects.create_user("anna", password="pw", is_staff=True)
    anna.groups.add(Group.objects.get(name=APPROVERS))
    client.force_login(olga)
    return {"olga": olga, "anna": anna}


def letters(n):
    return [DeadLetter.objects.create(topic="platform-ping", body_sha256=f"{i:064d}", raw_body="{}", error="bad").pk
            for i in range(n)]


def discard(client, pks):
    response = client.post(LETTERS, {"action": "discard", "_selected_action": pks}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_discarding_more_than_the_threshold_waits_for_an_approver(client, people):
    pks = letters(3)
    page = discard(client, pks)
    assert "more than 2" in page
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"open"}
    change = ChangeRequest.objects.get(kind="inbox.letter_discard")
    assert (change.payload, change.requested_by, change.before["items"]) == ({"pks": pks}, "olga", 3)
    with pytest.raises(ApprovalRefused):
        change_request_approve(request_id=change.pk, by=people["olga"])
    change = change_request_approve(request_id=change.pk, by=people["anna"])
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"discarded"}
    assert change.preview["outcome"] == {"discarded": 3}
    assert AuditLogEntry.objects.filter(action="inbox.letter_discard", actor="anna").exists()


def test_at_the_threshold_it_runs_at_once_and_is_audited(client, people):
    pks = letters(2)
    page = discard(client, pks)
    assert "Discarded." in page and not ChangeRequest.objects.exists()
    assert set(DeadLetter.objects.values_list("status", flat=True)) == {"discarded"}
    # each letter's discard is audited by the inbox's service
    assert sorted(AuditLogEntry.objects.filter(action="inbox.dead_letter_discard", actor="olga")
                  .values_list("target_id", flat=True)) == sorted(map(str, pks))


def test_a_mass_request_is_stale_when_an_item_was_handled_meanwhile(client, people):
    pks = letters(3)
    discard(client, pks)
    DeadLetter.objects.filter(pk=pks[0]).update(status=DeadLetter.Status.DISCARDED)
    with pytest.raises(ChangeRequestStale):
        change_request_approve(request_id=ChangeRequest.objects.get().pk, by=people["anna"])
    assert DeadLetter.objects.filter(status="open").count() == 2


def test_line_test_message_to_many_users_waits_for_an_approver(client, people):
    from line_integration.models import LineUser, OutboundMessage

    users = [LineUser.objects.create(line_user_id=f"U{i:032d}", customer_id=f"c-{i}", status=LineUser.Status.LINKED)
             for i in range(3)]
    response = client.post("/admin/line_integration/lineuser/", {
        "action": "send_test_message", "_selected_action": [u.pk for u in users]}, follow=True)
    assert "more than 2" in response.content.decode()
    assert not OutboundMessage.objects.exists()
    change = ChangeRequest.objects.get(kind="line.test_message_send")
    change_request_approve(request_id=change.pk, by=people["anna"])
    assert OutboundMessage.objects.count() == 3
    assert AuditLogEntry.objects.get(action="line.test_message_send").after == {"customers": 3, "queued": 3}
