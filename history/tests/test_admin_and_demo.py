"""Operators' screens and the demo seed."""

import io

import pytest
from django.contrib.auth import get_user_model

from history.models import PaymentEntry
from mercari_ops.inbox.models import InboxEvent

from .factories import card_tree, payment_event

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


@pytest.fixture
def operator_client(client):
    user = get_user_model().objects.create_superuser("op", "", "pw-123456789")
    client.force_login(user)
    return client


def test_customer_history_page_shows_the_app_view(operator_client, push):
    for event in card_tree(1, repaid=False):
        push(TOPIC, event)
    page = operator_client.get("/admin/history/paymententry/customer/c-1/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "pur-1" in html and "tx-1" in html and "repay" in html and "billed" in html


def test_entry_change_page_lists_its_transitions(operator_client, push):
    for event in card_tree(1):
        push(TOPIC, event)
    entry = PaymentEntry.objects.get(payment_id="tx-1")
    html = operator_client.get(f"/admin/history/paymententry/{entry.pk}/change/").content.decode()
    assert "mercard.billed" in html and "repayment.completed" in html


def test_waiting_and_dead_views_show_only_payment_events_and_replay(operator_client, push):
    orphan = payment_event("mercard.transaction", "tx-w", "pur-w")
    push(TOPIC, orphan)
    push(TOPIC, payment_event("mercard.billed", "b-x"))  # no parent_id: dead
    waiting = operator_client.get("/admin/history/waitingpaymentevent/").content.decode()
    assert orphan["event_id"] in waiting
    dead = operator_client.get("/admin/history/deadpaymentevent/").content.decode()
    assert "parent_id is required" in dead
    push(TOPIC, payment_event("mercari.purchase", "pur-w"))  # releases it on its own
    assert InboxEvent.objects.get(event_id=orphan["event_id"]).status == "processed"
    # a replay from the admin of a still-waiting event keeps it waiting, without an attempt
    other = payment_event("mercard.transaction", "tx-w2", "pur-w2")
    push(TOPIC, other)
    row = InboxEvent.objects.get(event_id=other["event_id"])
    response = operator_client.post("/admin/history/waitingpaymentevent/",
                                    {"action": "replay", "_selected_action": [row.pk]}, follow=True)
    assert response.status_code == 200
    row.refresh_from_db()
    assert (row.status, row.attempts) == ("waiting", 0)


def test_dead_letter_view_lists_bad_bodies(operator_client, push):
    push(TOPIC, payment_event("nonsense", "x"))
    html = operator_client.get("/admin/history/paymentdeadletter/").content.decode()
    assert "type must be one of" in html


def test_demo_seed_is_idempotent_and_realistic(db):
    from history import demo

    first = demo.seed(stdout=io.StringIO())
    count = PaymentEntry.objects.count()
    second = demo.seed(stdout=io.StringIO())
    assert PaymentEntry.objects.count() == count
    assert "0 payment events applied" in second and "waited for their parent" in first
    states = set(PaymentEntry.objects.values_list("state", flat=True))
    assert {"billed", "repaid", "refunded", "authorized", "completed"} <= states
    assert not InboxEvent.objects.filter(topic=TOPIC).exclude(status="processed").exists()
    assert set(InboxEvent.objects.filter(topic=TOPIC).values_list("attempts", flat=True)) == {1}
