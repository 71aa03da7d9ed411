"""The handler's hot path: what it stores through raw SQL, how many statements it costs, prepared statements."""

from datetime import UTC, datetime

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from history.models import PaymentEntry, PaymentTransition
from history.services import history_sql, payment_event_apply
from mercari_ops.inbox.models import InboxEvent

from .factories import card_tree

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


def applied_queries(event: dict) -> list[str]:
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        assert payment_event_apply(event) is None
    return [q["sql"] for q in captured.captured_queries]


def test_entry_columns_written_by_sql_read_back_through_the_orm(push):
    purchase, card, billed, _ = card_tree(1)
    for event in (purchase, card, billed):
        assert push(TOPIC, event).status_code == 204
    entry = PaymentEntry.objects.get(payment_id="tx-1")
    assert entry.attributes == {"merchant_id": "m-mercari", "payment_method": "mercard"}  # an object, not a string
    assert entry.occurred_at == datetime(2026, 10, 1, 9, 1, tzinfo=UTC)
    assert entry.state_at == datetime(2026, 10, 1, 9, 2, tzinfo=UTC)  # the bill's time
    assert (entry.title, entry.event_id, entry.parent.payment_id, entry.root.payment_id) == (
        "Mercard", card["event_id"], "pur-1", "pur-1")
    bill = PaymentTransition.objects.get(entry=entry, kind="mercard.billed")
    assert (bill.from_state, bill.to_state, bill.outcome, bill.source_id, bill.event_id, bill.amount) == (
        "authorized", "billed", "applied", "bill-1", billed["event_id"], 3000)
    assert bill.occurred_at == datetime(2026, 10, 1, 9, 2, tzinfo=UTC)


def test_entry_costs_two_statements_and_transition_three_when_nothing_waits():
    purchase, card, billed, _ = card_tree(2)
    # entries: lock, then lookup + insert + "does anything wait?" in one; no inbox release query
    assert len(applied_queries(purchase)) == 2
    assert len(applied_queries(card)) == 2
    # state changes: lock, row-locked lookup, one write that also asks whether anything waits
    queries = applied_queries(billed)
    assert len(queries) == 3
    assert not any("inbox_inboxevent" in q and "FOR UPDATE" in q for q in queries)


def test_release_runs_only_when_an_event_waits(push):
    purchase, card, *_ = card_tree(3)
    assert push(TOPIC, card).status_code == 204  # early child parks
    queries = applied_queries(purchase)
    assert any("inbox_inboxevent" in q and "FOR UPDATE" in q for q in queries)
    assert InboxEvent.objects.get(event_id=card["event_id"]).status == "processed"
    assert PaymentEntry.objects.get(payment_id="tx-3").parent.payment_id == "pur-3"


def test_handler_statements_are_prepared_once_per_connection():
    # the threshold comes from DATABASES OPTIONS (settings); the handler itself never sets one
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert threshold is not None
    for n in range(threshold + 1):
        with transaction.atomic():
            for event in card_tree(f"p{n}", customer_id=f"c-p{n}", repaid=False):
                payment_event_apply(event)
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = {row[0] for row in cursor.fetchall()}
    # psycopg sends the statement with $n placeholders: compare up to the first one
    for statement in (history_sql.ENTRY_LOOKUP_CREATE, history_sql.TRANSITION_TARGET_LOCK,
                      history_sql.TRANSITION_RECORD):
        head = statement.split("%(")[0]
        assert any(s.startswith(head) for s in prepared), head


def test_republished_entry_with_a_parent_is_not_applied_twice(push):
    purchase, card, *_ = card_tree(4)
    push(TOPIC, purchase)
    push(TOPIC, card)
    assert push(TOPIC, dict(card, event_id="pe-again")).status_code == 204
    assert PaymentEntry.objects.filter(payment_id="tx-4").count() == 1
    moved = push(TOPIC, dict(card, event_id="pe-other-parent", parent_id="pur-x"))
    assert (moved.status_code, moved.json()["field"]) == (400, "payment_id")  # same payment, other parent
    assert PaymentEntry.objects.get(payment_id="tx-4").parent.payment_id == "pur-4"


def test_superseded_bill_still_decides_the_repayment_waiting_for_it(push):
    purchase, card, billed, repaid, refund = card_tree(5, refund=True)
    for event in (purchase, card, repaid):  # the repayment waits for the bill
        push(TOPIC, event)
    assert InboxEvent.objects.get(event_id=repaid["event_id"]).waiting_on == "tx-5#billed"
    push(TOPIC, refund)  # authorized -> refunded; nothing waits on tx-5#refunded
    assert push(TOPIC, billed).status_code == 204  # late: superseded, then the repayment is decided
    entry = PaymentEntry.objects.get(payment_id="tx-5")
    assert entry.state == "refunded"
    assert list(entry.transitions.values_list("kind", "outcome")) == [
        ("mercard.transaction", "applied"), ("payment.refunded", "applied"), ("mercard.billed", "superseded"),
        ("repayment.completed", "superseded")]
    assert InboxEvent.objects.get(event_id=repaid["event_id"]).status == "processed"
