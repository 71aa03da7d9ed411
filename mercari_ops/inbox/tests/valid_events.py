"""One valid event of each topic that ships with the project (CONTRACTS section 1), for tests that spoil them."""

from history.tests.factories import payment_event

VALID = {
    "platform-ping": {"event_id": "ping-1"},
    "loyalty-activity": {"event_id": "act-1", "customer_id": "c-1", "kind": "sell", "amount": 1200,
                         "occurred_at": "2026-10-03T09:00:00Z"},
    "card-status": {"event_id": "cs-1", "customer_id": "c-1", "mercard_status": 2,
                    "changed_at": "2026-10-01T00:00:00Z"},
    "card-bill-settled": {"event_id": "bs-1", "bill_id": "b-2026-10-c-1", "customer_id": "c-1",
                          "billing_month": "2026-10", "settled_at": "2026-11-27T03:00:00Z",
                          "lines": [{"payment_id": "p-1", "amount": 3000, "merchant_id": "m-77",
                                     "payment_method": "mercard", "channel": "mercari",
                                     "paid_at": "2026-10-12T11:00:00Z"}]},
    "payment-events": payment_event("mercard.transaction", "tx-9", event_id="pe-1"),
}
