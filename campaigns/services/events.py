"""Inbox handlers: `card-status` (newest changed_at wins) and `card-bill-settled` (record, then settle)."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from mercari_ops.common.enqueue import enqueue_after_commit
from mercari_ops.common.schema import MAX_YEN, DateTime, Int, List, Schema, Str

from ..models import Bill, BillLine
from . import events_sql

CARD_STATUS_SCHEMA = Schema({
    "event_id": Str(max_length=128),
    "customer_id": Str(max_length=64),
    "mercard_status": Int(min_value=0, max_value=32767),
    "changed_at": DateTime(),
})

BILL_LINE_SCHEMA = Schema({
    "payment_id": Str(max_length=128),
    "amount": Int(min_value=-MAX_YEN, max_value=MAX_YEN),
    "merchant_id": Str(max_length=64),
    "payment_method": Str(max_length=32),
    "channel": Str(max_length=16, choices=("mercari", "outside")),
    "paid_at": DateTime(),
})


class _Month(Str):
    def clean(self, value, name):
        value = super().clean(value, name)
        try:
            datetime.strptime(value, "%Y-%m")
        except ValueError:
            from mercari_ops.common.schema import SchemaError

            raise SchemaError(f"{name} must be YYYY-MM; got {value!r}", name) from None
        return value


BILL_SCHEMA = Schema({
    "event_id": Str(max_length=128),
    "bill_id": Str(max_length=128),
    "customer_id": Str(max_length=64),
    "billing_month": _Month(max_length=7),
    "settled_at": DateTime(),
    "lines": List(BILL_LINE_SCHEMA, max_items=5000),
})


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- card status ----------------------------------------------------------------------


def card_status_record_many(*, events: list[dict]) -> None:
    """Upsert the newest status per customer; an older changed_at never overwrites a newer one."""
    newest: dict[str, dict] = {}
    for event in events:
        current = newest.get(event["customer_id"])
        if current is None or _parse(event["changed_at"]) > _parse(current["changed_at"]):
            newest[event["customer_id"]] = event
    events_sql.card_statuses_upsert(rows=[
        (event["customer_id"], event["mercard_status"], _parse(event["changed_at"]), event["event_id"])
        for event in newest.values()
    ])


def card_status_record(event: dict) -> None:
    card_status_record_many(events=[event])


# --- bills ----------------------------------------------------------------------------------


def bills_record_many(*, events: list[dict], enqueue: bool = True) -> list[int]:
    """Store bills and their lines once per bill_id (a replayed bill is ignored); settle after commit.

    Returns the primary keys of the bills that were new.
    """
    if not events:
        return []
    now = timezone.now()
    by_bill = {}
    for event in events:
        by_bill.setdefault(event["bill_id"], event)
    bills = [
        Bill(bill_id=e["bill_id"], customer_id=e["customer_id"], billing_month=e["billing_month"],
             settled_at=_parse(e["settled_at"]), event_id=e["event_id"], line_count=len(e["lines"]),
             received_at=now)
        for e in by_bill.values()
    ]
    known = set(Bill.objects.filter(bill_id__in=list(by_bill)).values_list("bill_id", flat=True))
    fresh = [bill for bill in bills if bill.bill_id not in known]
    Bill.objects.bulk_create(fresh, ignore_conflicts=True, batch_size=1000)
    ids = dict(Bill.objects.filter(bill_id__in=[b.bill_id for b in fresh], received_at=now)
               .values_list("bill_id", "pk"))
    lines = []
    for bill_id, pk in ids.items():
        event = by_bill[bill_id]
        seen = set()
        for line in event["lines"]:
            if line["payment_id"] in seen:
                continue
            seen.add(line["payment_id"])
            lines.append(BillLine(
                bill_id=pk, payment_id=line["payment_id"], customer_id=event["customer_id"], amount=line["amount"],
                merchant_id=line["merchant_id"], payment_method=line["payment_method"], channel=line["channel"],
                paid_at=_parse(line["paid_at"]),
            ))
    BillLine.objects.bulk_create(lines, batch_size=2000)
    new_ids = sorted(ids.values())
    if enqueue and new_ids:
        from ..tasks import settle_bills_task

        enqueue_after_commit(settle_bills_task, new_ids)  # broker down: campaigns.settle_sweep settles them
    return new_ids


def bill_record(event: dict) -> None:
    bills_record_many(events=[event])


def bill_record_batch(events: list[dict]) -> None:
    bills_record_many(events=events)
