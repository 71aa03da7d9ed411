"""The emergency stop: one person pauses every LINE send at once, queued messages wait (none dropped), resuming
delivers each once; both audited."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from line_integration.models import OutboundMessage
from line_integration.services import message_enqueue, pause, sender_run, sending_pause_set, sending_paused
from mercari_ops.common.models import AuditLogEntry

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _forget_the_cached_switch():
    """The switch is cached for a second per process; the test's rows roll back, the cache must go too."""
    yield
    pause._cached = (0.0, False)


def test_paused_senders_send_nothing_and_resumed_ones_deliver_each_message_once(
        line_sandbox, text_template, link_customers, drain):
    linked = link_customers(["c-1", "c-2"])
    for customer_id in linked:
        message_enqueue(dispatch_id="d-pause", user_id=customer_id, template="saved_search_new_items",
                        params={"search_id": customer_id})
    # when an operator pauses sending
    sending_pause_set(paused=True, by="op", reason="wrong copy in the Braze campaign")
    totals = sender_run(seconds=1)
    # then nothing went out and nothing was dropped
    assert sending_paused() and totals["claimed"] == 0
    assert line_sandbox.control("stats")["status_counts"] == {}
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"queued"}
    # when sending resumes, each message goes out once
    sending_pause_set(paused=False, by="op")
    drain()
    counts = line_sandbox.control("deliveries")["counts"]
    assert {counts.get(line_id) for line_id in linked.values()} == {1}
    assert list(AuditLogEntry.objects.filter(action__startswith="line.sending").order_by("id")
                .values_list("action", "actor")) == [
        ("line.sending_pause", "op"), ("line.sending_resume", "op")]


def test_an_operator_pauses_sending_from_the_admin_alone(client):
    operator = get_user_model().objects.create_user("ops-1", password="x", is_staff=True)
    operator.groups.add(Group.objects.get(name="operators"))
    client.force_login(operator)
    page = client.get("/admin/line_integration/sendingpause/", follow=True)
    assert page.status_code == 200 and page.redirect_chain[-1][0].endswith("/sendingpause/1/change/")
    answer = client.post("/admin/line_integration/sendingpause/1/change/",
                         {"paused": "on", "reason": "incident 42"})
    assert answer.status_code == 302 and sending_paused(fresh=True)
    entry = AuditLogEntry.objects.get(action="line.sending_pause")
    assert (entry.actor, entry.after) == ("ops-1", {"paused": True, "reason": "incident 42"})


def test_a_marketer_cannot_pause_sending(client):
    marketer = get_user_model().objects.create_user("mk-1", password="x", is_staff=True)
    marketer.groups.add(Group.objects.get(name="marketers"))
    client.force_login(marketer)
    assert client.post("/admin/line_integration/sendingpause/1/change/", {"paused": "on"}).status_code == 403
    assert not sending_paused(fresh=True)
