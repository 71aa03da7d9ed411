"""Canonical entries, the state machine and parents-first ordering through the real push endpoint."""

from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from conftest import push_body
from history.models import PaymentEntry, PaymentTransition
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.services import inbox_event_replay, inbox_sweep_waiting

from .factories import card_tree, payment_event

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


def state(payment_id: str) -> str:
    return PaymentEntry.objects.get(payment_id=payment_id).state


def inbox(event: dict) -> InboxEvent:
    return InboxEvent.objects.get(topic=TOPIC, event_id=event["event_id"])


def push_all(push, events):
    return [push(TOPIC, event).status_code for event in events]


def test_in_order_tree_builds_canonical_entries_and_walks_the_card_path(push):
    events = card_tree(1)
    assert push_all(push, events) == [204] * 4
    purchase = PaymentEntry.objects.get(payment_id="pur-1")
    card = PaymentEntry.objects.get(payment_id="tx-1")
    assert (purchase.type, purchase.state, purchase.parent, purchase.title) == (
        "mercari.purchase", "completed", None, "item 1")
    assert (card.parent_id, card.root_id, card.state, card.amount) == (purchase.pk, purchase.pk, "repaid", 3000)
    assert list(card.transitions.values_list("from_state", "to_state")) == [
        ("", "authorized"), ("authorized", "billed"), ("billed", "repaid")]
    assert PaymentEntry.objects.count() == 2  # bills and repayments are transitions, not entries


def test_children_before_parents_wait_without_an_attempt_then_apply_in_order(push):
    purchase, card, billed, repaid = card_tree(2)
    # given: the grandchildren and the child arrive first, newest first
    assert push_all(push, [repaid, billed, card]) == [204, 204, 204]
    assert not PaymentEntry.objects.exists()
    assert (inbox(card).status, inbox(card).waiting_on, inbox(card).attempts) == ("waiting", "pur-2", 0)
    assert inbox(billed).waiting_on == inbox(repaid).waiting_on == "tx-2"
    # when: the parent arrives
    assert push(TOPIC, purchase).status_code == 204
    # then: everything is applied in the same request, in occurred_at order, each exactly once
    assert state("tx-2") == "repaid"
    rows = InboxEvent.objects.filter(topic=TOPIC)
    assert set(rows.values_list("status", flat=True)) == {"processed"}
    assert set(rows.values_list("attempts", flat=True)) == {1}
    kinds = list(PaymentTransition.objects.filter(entry__payment_id="tx-2").values_list("kind", flat=True))
    assert kinds == ["mercard.transaction", "mercard.billed", "repayment.completed"]


def test_repayment_before_its_bill_waits_for_the_billed_state(push):
    purchase, card, billed, repaid = card_tree(3)
    push_all(push, [purchase, card, repaid])
    assert state("tx-3") == "authorized"
    assert (inbox(repaid).status, inbox(repaid).waiting_on, inbox(repaid).attempts) == ("waiting", "tx-3#billed", 0)
    push(TOPIC, billed)
    assert state("tx-3") == "repaid"
    assert inbox(repaid).attempts == 1


def test_late_bill_after_a_refund_is_recorded_as_superseded_not_applied(push):
    purchase, card, billed, refund = card_tree(4, repaid=False, refund=True)
    push_all(push, [purchase, card, refund, billed])
    assert state("tx-4") == "refunded"  # the same final state as in order
    late = PaymentTransition.objects.get(entry__payment_id="tx-4", kind="mercard.billed")
    assert (late.outcome, late.to_state) == ("superseded", "refunded")
    assert inbox(billed).status == "processed"


def test_unknown_type_is_rejected_with_400_and_kept_as_dead_letter(push):
    event = payment_event("mercard.chargeback", "cb-1", "tx-1")
    response = push(TOPIC, event)
    assert response.status_code == 400
    assert response.json()["field"] == "type"
    assert DeadLetter.objects.get(topic=TOPIC).field == "type"
    assert not InboxEvent.objects.filter(topic=TOPIC).exists()


@pytest.mark.parametrize("type_", ["mercard.billed", "repayment.completed", "payment.refunded"])
def test_missing_parent_id_for_a_type_that_needs_one_is_dead(push, type_):
    event = payment_event(type_, "x-1")
    response = push(TOPIC, event)
    assert response.status_code == 400
    assert response.json() == {"error": f"parent_id is required for {type_} (it names the payment it changes)",
                               "field": "parent_id"}
    assert (inbox(event).status, inbox(event).error_field) == ("dead", "parent_id")


def test_wrong_parent_type_is_dead(push):
    push(TOPIC, payment_event("merpay.payment", "mp-1"))
    event = payment_event("mercard.billed", "bill-x", "mp-1")
    assert push(TOPIC, event).status_code == 400
    assert inbox(event).last_error == "mercard.billed cannot apply to a merpay.payment"


def test_payment_republished_with_other_details_is_dead_and_the_entry_kept(push):
    push(TOPIC, payment_event("merpay.payment", "mp-1", amount=1000))
    event = payment_event("merpay.payment", "mp-1", amount=2000)  # a new event_id, another amount
    assert push(TOPIC, event).status_code == 400
    assert (inbox(event).status, inbox(event).error_field) == (InboxEvent.Status.DEAD, "payment_id")
    assert "already exists with other details" in inbox(event).last_error
    assert PaymentEntry.objects.get(payment_id="mp-1").amount == 1000


def test_wrong_parent_type_for_a_new_entry_is_dead(push):
    push(TOPIC, payment_event("mercard.transaction", "tx-1"))
    event = payment_event("merpay.payment", "mp-2", "tx-1")  # a Merpay payment is never under a card transaction
    assert push(TOPIC, event).status_code == 400
    assert inbox(event).last_error == "a merpay.payment cannot have a mercard.transaction as parent"
    assert not PaymentEntry.objects.filter(payment_id="mp-2").exists()


def test_parent_of_another_customer_is_dead(push):
    push(TOPIC, payment_event("mercari.purchase", "pur-9", customer_id="c-1"))
    event = payment_event("mercard.transaction", "tx-9", "pur-9", customer_id="c-2")
    assert push(TOPIC, event).status_code == 400
    assert inbox(event).error_field == "customer_id"
    assert not PaymentEntry.objects.filter(payment_id="tx-9").exists()


def test_child_whose_parent_never_comes_is_alerted_then_dead_and_replayable(push, settings):
    orphan = payment_event("mercard.transaction", "tx-orphan", "pur-never")
    assert push(TOPIC, orphan).status_code == 204  # acknowledged, never nacked
    now = timezone.now()
    assert inbox_sweep_waiting(now=now + timedelta(seconds=settings.INBOX_WAITING_ALERT_SECONDS + 1))["alerted"] == 1
    assert inbox_sweep_waiting(now=now + timedelta(seconds=settings.INBOX_WAITING_TIMEOUT_SECONDS + 1))["dead"] == 1
    row = inbox(orphan)
    assert (row.status, row.attempts, row.waiting_on) == ("dead", 0, "pur-never")
    # the parent finally shows up: an operator replays the dead child
    push(TOPIC, payment_event("mercari.purchase", "pur-never"))
    assert inbox_event_replay(event_pk=row.pk).outcome.value == "processed"
    assert PaymentEntry.objects.get(payment_id="tx-orphan").parent.payment_id == "pur-never"


@pytest.mark.parametrize(("before", "event_type", "reason"), [
    ("repaid", "mercard.billed", "invalid transition: mercard.billed on a mercard.transaction that is repaid"),
    ("repaid", "repayment.completed", "invalid transition: repayment.completed on a mercard.transaction that is "
                                      "repaid"),
    ("refunded", "payment.refunded", "invalid transition: payment.refunded on a mercard.transaction that is "
                                     "refunded"),
])
def test_invalid_transition_is_dead_lettered_with_the_reason_and_not_applied(push, before, event_type, reason):
    push_all(push, card_tree(5, repaid=before == "repaid", refund=before == "refunded"))
    assert state("tx-5") == before
    event = payment_event(event_type, "again-5", "tx-5", minutes=60)
    response = push(TOPIC, event)
    assert response.status_code == 400
    assert response.json() == {"error": reason, "field": "type"}
    assert (inbox(event).status, inbox(event).last_error) == ("dead", reason)
    assert state("tx-5") == before
    assert not PaymentTransition.objects.filter(source_id="again-5").exists()


def test_duplicate_event_is_acked_and_applied_once(push):
    purchase, card, billed, _ = card_tree(6)
    push_all(push, [purchase, card])
    assert push(TOPIC, billed).status_code == 204
    assert push(TOPIC, billed).status_code == 204  # Pub/Sub redelivery, new messageId
    assert push(TOPIC, body=push_body(billed)).status_code == 204
    assert PaymentTransition.objects.filter(entry__payment_id="tx-6", kind="mercard.billed").count() == 1
    assert inbox(billed).attempts == 1


def test_republished_change_under_a_new_event_id_is_not_applied_twice(push):
    purchase, card, billed, _ = card_tree(7)
    push_all(push, [purchase, card, billed])
    again = dict(billed, event_id="pe-republished")
    assert push(TOPIC, again).status_code == 204
    assert state("tx-7") == "billed"
    assert PaymentTransition.objects.filter(entry__payment_id="tx-7").count() == 2
    again_entry = dict(purchase, event_id="pe-republished-2")
    assert push(TOPIC, again_entry).status_code == 204
    conflicting = dict(purchase, event_id="pe-conflict", amount=1)
    assert push(TOPIC, conflicting).status_code == 400
    assert inbox(conflicting).error_field == "payment_id"


def test_deep_chain_released_recursively(push):
    # purchase <- merpay payment <- card transaction <- bill, delivered bottom-up
    events = [
        payment_event("mercari.purchase", "pur-d", minutes=0),
        payment_event("merpay.payment", "mp-d", "pur-d", minutes=1),
        payment_event("mercard.transaction", "tx-d", "mp-d", minutes=2),
        payment_event("mercard.billed", "bill-d", "tx-d", minutes=3),
    ]
    push_all(push, list(reversed(events)))
    assert state("tx-d") == "billed"
    card = PaymentEntry.objects.get(payment_id="tx-d")
    assert card.root.payment_id == "pur-d" and card.parent.payment_id == "mp-d"
    counts = InboxEvent.objects.filter(topic=TOPIC).aggregate(n=Count("id"))
    assert counts["n"] == 4
    assert set(InboxEvent.objects.filter(topic=TOPIC).values_list("attempts", flat=True)) == {1}
