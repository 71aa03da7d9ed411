"""Stage pins move a customer's stage (and so their rewards): setting and revoking one is audited, in the
transaction of the change, with who and from where."""

from datetime import UTC, datetime, timedelta

from loyalty.models import StagePin
from loyalty.tests.factories import publish_rules
from mercari_ops.common.models import AuditLogEntry


def test_a_pin_set_and_revoked_in_the_admin_is_audited(admin_client):
    publish_rules()
    expires = datetime.now(UTC) + timedelta(days=10)
    response = admin_client.post("/admin/loyalty/stagepin/add/", {
        "customer_ref": "c-77", "floor": 30, "reason": "support case 42",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")},
        REMOTE_ADDR="10.4.4.4")
    assert response.status_code == 302, response.content[:2000]
    pin = StagePin.objects.get()
    added = AuditLogEntry.objects.get(action="stage_pin.set", target_id=str(pin.pk))
    assert (added.actor, added.actor_ip, added.note) == ("admin", "10.4.4.4", "support case 42")
    assert added.before == {"stage": 10, "pin_floor": None, "pin_expires_at": None}
    assert added.after["stage"] == 30 and added.after["pin_floor"] == 30

    admin_client.post("/admin/loyalty/stagepin/", {"action": "revoke", "_selected_action": [pin.pk]})
    revoked = AuditLogEntry.objects.get(action="stage_pin.revoke", target_id=str(pin.pk))
    assert revoked.actor == "admin"
    assert (revoked.before["stage"], revoked.after["stage"], revoked.after["pin_floor"]) == (30, 10, None)


def test_a_refused_pin_leaves_no_audit_entry(admin_client):
    publish_rules()
    expires = datetime.now(UTC) + timedelta(days=10)
    response = admin_client.post("/admin/loyalty/stagepin/add/", {
        "customer_ref": "c-77", "floor": 25, "reason": "x",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")})
    assert response.status_code == 200
    assert not AuditLogEntry.objects.filter(action__startswith="stage_pin.").exists()


def test_resuming_a_recomputation_by_hand_is_audited(admin_client):
    from loyalty.models import RecomputeJob

    job = RecomputeJob.objects.get(rule_version=publish_rules())
    admin_client.post("/admin/loyalty/recomputejob/", {"action": "resume", "_selected_action": [job.pk]})
    entry = AuditLogEntry.objects.get(action="recompute_job.resume", target_id=str(job.pk))
    assert entry.actor == "admin"
