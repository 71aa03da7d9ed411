"""Payment events' dead letters and dead events: replay and discard from the history admin are audited with
who, from where, before and after (the money trail of a payment must show who pushed it through by hand)."""

import pytest

from history.canonical import TOPIC
from mercari_ops.common.models import AuditLogEntry
from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db
LETTERS = "/admin/history/paymentdeadletter/"


def _letter(n: int) -> DeadLetter:
    return DeadLetter.objects.create(topic=TOPIC, body_sha256=f"{n:064d}", raw_body="{}", error="bad")


def test_replaying_and_discarding_a_payment_dead_letter_is_audited(admin_client):
    replayed, discarded = _letter(1), _letter(2)
    admin_client.post(LETTERS, {"action": "replay", "_selected_action": [replayed.pk]}, REMOTE_ADDR="10.3.3.3")
    entry = AuditLogEntry.objects.get(action="inbox.dead_letter_replay", target_id=str(replayed.pk))
    assert (entry.actor, entry.actor_ip, entry.before) == ("admin", "10.3.3.3", {"status": "open"})
    assert entry.after["outcome"] == "dead"  # "{}" is still not a payment event: the attempt is on record

    admin_client.post(LETTERS, {"action": "discard", "_selected_action": [discarded.pk]}, REMOTE_ADDR="10.3.3.3")
    assert DeadLetter.objects.get(pk=discarded.pk).status == DeadLetter.Status.DISCARDED
    entry = AuditLogEntry.objects.get(action="inbox.dead_letter_discard", target_id=str(discarded.pk))
    assert (entry.actor_ip, entry.before, entry.after) == ("10.3.3.3", {"status": "open"}, {"status": "discarded"})


def test_discarding_dead_payment_events_is_audited(admin_client):
    events = [InboxEvent.objects.create(topic=TOPIC, event_id=f"ev-{n}", payload={}, status=InboxEvent.Status.DEAD)
              for n in range(2)]
    admin_client.post("/admin/history/deadpaymentevent/", {
        "action": "discard", "_selected_action": [e.pk for e in events]})
    entry = AuditLogEntry.objects.get(action="inbox.event_discard")
    assert entry.actor == "admin" and entry.after["items"] == 2
    assert set(entry.target_id.split(",")) == {str(e.pk) for e in events}
