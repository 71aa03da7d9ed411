"""Deleting from the admin: every registered ModelAdmin either refuses delete or writes the audit log for it
(mercari_ops/common/audit_admin.py). A new ModelAdmin is covered without editing this test."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import RequestFactory

from campaigns.models import Campaign, MerchantAlias, MerchantMaster
from line_integration.models import MessageTemplate
from mercari_ops.common.audit_admin import OWN_PACKAGES, AuditedDeleteMixin
from mercari_ops.common.models import AuditLogEntry
from mercari_ops.inbox.models import DeadLetter, InboxEvent

# Rows that record money, messages or evidence: never deleted by hand, whatever the role.
NEVER_DELETED = {
    "common.auditlogentry", "common.changerequest", "inbox.inboxevent", "inbox.deadletter",
    "history.paymententry", "history.paymentdeadletter", "history.waitingpaymentevent",
    "history.deadpaymentevent", "history.repaymentrequest", "line_integration.outboundmessage",
    "line_integration.campaigndelivery", "line_integration.linerequest", "line_integration.webhookevent",
    "line_integration.lineuser", "campaigns.pointsgrant", "campaigns.bill", "campaigns.campaignreward",
    "campaigns.pointsledgerentry", "campaigns.campaignversion", "loyalty.stagechange", "loyalty.stagepin",
}


@pytest.fixture
def superuser_request(db):
    user = get_user_model().objects.create_superuser("root", password="x")
    request = RequestFactory().post("/admin/", REMOTE_ADDR="10.9.8.7")
    request.user = user
    return request


def test_every_admin_refuses_delete_or_audits_it(superuser_request):
    registry = admin.site._registry
    assert set(NEVER_DELETED) <= {model._meta.label_lower for model in registry}
    for model, model_admin in registry.items():
        label = model._meta.label_lower
        deletable = model_admin.has_delete_permission(superuser_request)
        if label in NEVER_DELETED:
            assert not deletable, f"{label}: evidence rows are never deleted from the admin"
            assert "delete_selected" not in model_admin.get_actions(superuser_request), label
        elif deletable:
            assert isinstance(model_admin, AuditedDeleteMixin), f"{label}: a hand delete must be audited"
        if type(model_admin).__module__.startswith(OWN_PACKAGES) and deletable:
            # our own admins chose the audited delete in their class, not through the safety net
            assert any(AuditedDeleteMixin in base.__mro__ for base in type(model_admin).__bases__), label


def test_dead_letters_and_events_cannot_be_deleted_through_the_admin(admin_client):
    letter = DeadLetter.objects.create(topic="payment-events", event_id="ev-1", body_sha256="0" * 64, raw_body="{}",
                                       error="bad")
    event = InboxEvent.objects.create(topic="payment-events", event_id="ev-2", payload={},
                                      status=InboxEvent.Status.DEAD)
    assert admin_client.get(f"/admin/inbox/deadletter/{letter.pk}/delete/").status_code == 403
    response = admin_client.post("/admin/inbox/inboxevent/",
                                 {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"})
    assert response.status_code in (200, 302)
    assert DeadLetter.objects.filter(pk=letter.pk).exists() and InboxEvent.objects.filter(pk=event.pk).exists()


def test_deleting_a_template_through_the_delete_page_is_audited(admin_client):
    template = MessageTemplate.objects.create(name="welcome", messages=[{"type": "text", "text": "Hi"}])
    response = admin_client.post(f"/admin/line_integration/messagetemplate/{template.pk}/delete/", {"post": "yes"},
                                 REMOTE_ADDR="10.1.2.3")
    assert response.status_code == 302
    assert not MessageTemplate.objects.filter(pk=template.pk).exists()
    entry = AuditLogEntry.objects.get(action="line_integration.messagetemplate.delete", target_id=str(template.pk))
    assert (entry.actor, entry.actor_ip, entry.after) == ("admin", "10.1.2.3", None)
    assert entry.before["name"] == "welcome" and entry.before["messages"] == [{"type": "text", "text": "Hi"}]


def test_deleting_aliases_with_the_bulk_action_audits_each(admin_client):
    master = MerchantMaster.objects.create(master_id="m-1", name="Shop")
    aliases = [MerchantAlias.objects.create(master=master, merchant_id=f"mid-{n}") for n in range(2)]
    response = admin_client.post("/admin/campaigns/merchantalias/", {
        "action": "delete_selected", "_selected_action": [a.pk for a in aliases], "post": "yes"})
    assert response.status_code == 302
    assert not MerchantAlias.objects.exists()
    entries = AuditLogEntry.objects.filter(action="campaigns.merchantalias.delete").order_by("target_id")
    assert [e.target_id for e in entries] == sorted(str(a.pk) for a in aliases)
    assert {e.before["merchant_id"] for e in entries} == {"mid-0", "mid-1"}
    assert {e.before["master_id"] for e in entries} == {master.pk}


def test_a_third_party_admin_delete_is_audited_without_secrets(admin_client):
    user = get_user_model().objects.create_user("leaver", password="secret-pass")
    response = admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(action="auth.user.delete", target_id=str(user.pk))
    assert entry.before["username"] == "leaver" and "password" not in entry.before


def test_only_a_draft_campaign_is_deleted_by_hand(superuser_request):
    campaign_admin = admin.site._registry[Campaign]
    assert campaign_admin.has_delete_permission(superuser_request, Campaign(status=Campaign.Status.DRAFT))
    for status in (Campaign.Status.ACTIVE, Campaign.Status.ENDED):
        assert not campaign_admin.has_delete_permission(superuser_request, Campaign(status=status))


def test_a_draft_campaign_deleted_in_the_admin_is_audited(admin_client):
    from datetime import UTC, datetime

    from campaigns.services import campaign_create

    draft = campaign_create(name="Scratch", starts_at=datetime(2026, 12, 1, tzinfo=UTC),
                            ends_at=datetime(2027, 1, 1, tzinfo=UTC), rates=[(10, 20, "1.0")], by="mika")
    response = admin_client.post(f"/admin/campaigns/campaign/{draft.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Campaign.objects.filter(pk=draft.pk).exists()
    entry = AuditLogEntry.objects.get(action="campaigns.campaign.delete", target_id=str(draft.pk))
    assert (entry.before["name"], entry.before["status"], entry.actor) == ("Scratch", "draft", "admin")
