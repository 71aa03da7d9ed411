"""What customers receive is audited: message templates created and changed (admin and service), LINE test
messages sent (with any number of recipients)."""

import json

import pytest

from line_integration.models import LineUser, MessageTemplate
from line_integration.services.templates import template_save
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.models import AuditLogEntry

pytestmark = pytest.mark.django_db
HI = [{"type": "text", "text": "Hi {name}"}]


def test_a_template_added_and_changed_in_the_admin_is_audited(admin_client):
    form = {"name": "welcome", "description": "", "messages": json.dumps(HI), "enrich_path": "",
            "fallback_messages": "null", "active": "on"}
    response = admin_client.post("/admin/line_integration/messagetemplate/add/", form, REMOTE_ADDR="10.7.7.7")
    assert response.status_code == 302, response.content.decode()[:2000]
    template = MessageTemplate.objects.get(name="welcome")
    created = AuditLogEntry.objects.get(action="message_template.create", target_id=str(template.pk))
    assert (created.actor, created.actor_ip, created.before) == ("admin", "10.7.7.7", None)
    assert created.after["messages"] == HI

    changed_text = [{"type": "text", "text": "Hello {name}"}]
    response = admin_client.post(f"/admin/line_integration/messagetemplate/{template.pk}/change/",
                                 {**form, "messages": json.dumps(changed_text)})
    assert response.status_code == 302, response.content.decode()[:2000]
    updated = AuditLogEntry.objects.get(action="message_template.update", target_id=str(template.pk))
    assert (updated.before["messages"], updated.after["messages"]) == (HI, changed_text)


def test_a_template_saved_unchanged_or_refused_writes_no_entry():
    template_save(name="welcome", messages=HI, by="ops")
    template_save(name="welcome", messages=HI, by="ops")
    assert AuditLogEntry.objects.filter(action__startswith="message_template.").count() == 1
    assert AuditLogEntry.objects.get(action="message_template.create").actor == "ops"
    with pytest.raises(ValidationFailed):
        template_save(name="broken", messages=[{"type": "nonsense"}], by="ops")
    assert AuditLogEntry.objects.filter(action__startswith="message_template.").count() == 1


def test_a_test_message_to_many_users_is_audited_within_the_target_column(admin_client, settings):
    settings.CHANGE_REQUEST_MASS_THRESHOLD = 50  # sent at once, no change request
    users = [LineUser.objects.create(line_user_id=f"U{i:032d}", customer_id=f"customer-{i:05d}",
                                     status=LineUser.Status.LINKED) for i in range(25)]
    response = admin_client.post("/admin/line_integration/lineuser/", {
        "action": "send_test_message", "_selected_action": [u.pk for u in users]})
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(action="line.test_message_send")
    assert entry.actor == "admin" and entry.after["customers"] == 25
    assert len(entry.target_id) <= 100 and entry.target_id.startswith("customer-00000,")


def test_running_the_audience_job_by_hand_is_audited(admin_client):
    # queued on the test's real broker (or refused with a message if it is down): audited either way
    response = admin_client.post("/admin/line_integration/audiencejob/run-now/", REMOTE_ADDR="10.8.8.8")
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(action="line.audience_run_now")
    assert (entry.actor, entry.actor_ip, entry.target_type) == ("admin", "10.8.8.8", "line_integration.audiencejob")
