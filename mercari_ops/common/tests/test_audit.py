import csv
import io

import pytest
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from mercari_ops.common.audit import audit_record
from mercari_ops.common.models import AuditLogEntry

pytestmark = pytest.mark.django_db


def test_audit_record_takes_actor_and_ip_from_the_request_and_survives_the_target():
    # given
    user = get_user_model().objects.create_user("alice", password="x")
    request = RequestFactory().post("/admin/", REMOTE_ADDR="10.1.2.3")
    request.user = user
    # when
    entry = audit_record(action="user.role_change", target=user, before={"groups": []},
                         after={"groups": ["operators"]}, request=request)
    user.delete()
    # then
    entry = AuditLogEntry.objects.get(pk=entry.pk)
    assert (entry.actor, entry.actor_ip, entry.target_type) == ("alice", "10.1.2.3", "auth.user")
    assert entry.after == {"groups": ["operators"]}


def test_audit_admin_is_read_only_and_exports_csv(admin_client):
    entry = audit_record(action="token.revoke", target_type="common.servicetoken", target_id="7",
                         before={"active": True}, after={"active": False}, actor="bob")
    change = admin_client.get(f"/admin/common/auditlogentry/{entry.pk}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    assert admin_client.get("/admin/common/auditlogentry/add/").status_code == 403
    response = admin_client.post("/admin/common/auditlogentry/",
                                 {"action": "export_csv", "_selected_action": [entry.pk]})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["at", "actor", "actor_ip", "action"]
    assert rows[1][1:4] == ["bob", "", "token.revoke"] and rows[1][5] == "7"
