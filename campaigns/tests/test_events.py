"""card-status and card-bill-settled through the real Pub/Sub push endpoint."""

import pytest

from campaigns.models import Bill, BillLine, CardStatus
from campaigns.tests.factories import bill_event, line
from mercari_ops.inbox.models import DeadLetter

pytestmark = pytest.mark.django_db


def _status(event_id, status, changed_at, customer="c-1"):
    return {"event_id": event_id, "customer_id": customer, "mercard_status": status, "changed_at": changed_at}


def test_newest_changed_at_wins_whatever_the_arrival_order(push):
    assert push("card-status", _status("cs-2", 3, "2026-10-02T00:00:00Z")).status_code == 204
    assert push("card-status", _status("cs-1", 2, "2026-10-01T00:00:00Z")).status_code == 204  # older, late
    assert push("card-status", _status("cs-0", 9, "2026-10-02T00:00:00+09:00")).status_code == 204  # older too
    row = CardStatus.objects.get(customer_id="c-1")
    assert (row.mercard_status, row.event_id) == (3, "cs-2")
    assert push("card-status", _status("cs-3", 9, "2026-10-05T00:00:00Z")).status_code == 204
    assert CardStatus.objects.get(customer_id="c-1").mercard_status == 9


def test_card_status_batch_keeps_newest_per_customer(db):
    from campaigns.services import card_status_record_many

    card_status_record_many(events=[_status("a", 3, "2026-10-03T00:00:00Z"), _status("b", 2, "2026-10-01T00:00:00Z"),
                                    _status("c", 2, "2026-10-01T00:00:00Z", customer="c-2")])
    assert dict(CardStatus.objects.values_list("customer_id", "mercard_status")) == {"c-1": 3, "c-2": 2}


def test_bad_card_status_is_400_naming_the_field(push):
    response = push("card-status", {"event_id": "x", "customer_id": "c-1", "mercard_status": "two",
                                    "changed_at": "2026-10-01T00:00:00Z"})
    assert response.status_code == 400 and response.json()["field"] == "mercard_status"
    assert DeadLetter.objects.filter(topic="card-status").exists()


def test_bill_is_recorded_once_even_when_republished_with_a_new_event_id(push, django_capture_on_commit_callbacks):
    event = bill_event("c-1", [line("p-1", 3000), line("p-2", 500, "m-77", channel="outside")], bill_id="b-1")
    with django_capture_on_commit_callbacks() as callbacks:
        assert push("card-bill-settled", event).status_code == 204
    assert len(callbacks) == 1  # settlement enqueued after commit
    assert push("card-bill-settled", event).status_code == 204  # Pub/Sub redelivery: same event_id
    assert push("card-bill-settled", {**event, "event_id": "bs-retry"}).status_code == 204  # publisher retry
    bill = Bill.objects.get()
    assert (bill.bill_id, bill.line_count, bill.status) == ("b-1", 2, "pending")
    assert BillLine.objects.filter(bill=bill).count() == 2


@pytest.mark.parametrize("mutate, field", [
    (lambda e: e.pop("lines"), "lines"),
    (lambda e: e.update(billing_month="2026-13"), "billing_month"),
    (lambda e: e["lines"][0].update(amount="3000"), "lines.0.amount"),
    (lambda e: e["lines"][0].update(channel="store"), "lines.0.channel"),
    (lambda e: e["lines"][0].pop("paid_at"), "lines.0.paid_at"),
])
def test_bad_bill_is_400_naming_the_field(push, mutate, field):
    event = bill_event("c-1", [line("p-1", 3000)])
    mutate(event)
    response = push("card-bill-settled", event)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert not Bill.objects.exists()
