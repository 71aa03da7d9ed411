"""CPU per event of the payment-events handler alone: no HTTP, no inbox, one transaction per event (issue 6).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_handler [--events 6000]

The stream of bench.history_ingest (purchase -> card transaction -> bill over 1,000 customers),
put back in dependency order so no event waits, under a per-run prefix, cleaned as the inbox
cleans it, then `payment_event_apply` inside `transaction.atomic()` for each event, on PostgreSQL
(the history bench database, mops_bench_history). The first half warms the connection
(prepared statements); the second half is measured with time.process_time: the handler's share of
a push's CPU, next to what bench.history_ingest reports for the whole server.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_history, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import os
import time
import uuid

from bench.harness import django_in_process, report
from bench.history_ingest import stream

ORDER = {"mercari.purchase": 0, "mercard.transaction": 1, "mercard.billed": 2}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=6000)
    args = parser.parse_args()
    load_before = os.getloadavg()
    django_in_process("mops_bench_history")
    import django

    django.setup()
    from django.db import connection, transaction

    from history.services.events import payment_event_apply
    from mercari_ops.inbox.registry import get_topic
    from mercari_ops.inbox.services import event_clean

    run = uuid.uuid4().hex[:8]
    events, _ = stream(500, max(args.events // 500, 1))
    events.sort(key=lambda e: (int(e["event_id"].split("-")[2]), ORDER[e["type"]]))  # parents first

    def renamed(event: dict) -> dict:
        event = dict(event, event_id=f"h{run}{event['event_id']}", payment_id=f"h{run}{event['payment_id']}",
                     customer_id=f"c-hb-{event['customer_id']}")
        if event.get("parent_id"):
            event["parent_id"] = f"h{run}{event['parent_id']}"
        return event

    topic = get_topic("payment-events")
    cleaned = [event_clean(topic, renamed(event)) for event in events]
    half = len(cleaned) // 2

    def apply(batch: list[dict]) -> None:
        for event in batch:
            with transaction.atomic():
                assert payment_event_apply(event) is None  # in dependency order nothing waits

    apply(cleaned[:half])
    started = time.process_time()
    apply(cleaned[half:])
    cpu_ms = (time.process_time() - started) * 1000 / (len(cleaned) - half)
    with connection.cursor() as cursor:  # leave the bench database as it was
        cursor.execute("DELETE FROM history_paymenttransition WHERE entry_id IN "
                       "(SELECT id FROM history_paymententry WHERE customer_id LIKE 'c-hb-%%')")
        cursor.execute("DELETE FROM history_paymententry WHERE customer_id LIKE 'c-hb-%%' AND root_id IS NOT NULL")
        cursor.execute("DELETE FROM history_paymententry WHERE customer_id LIKE 'c-hb-%%'")
    report("Payment history: CPU of the payment-events handler per event (no HTTP, no inbox)", {
        "events_measured": len(cleaned) - half, "cpu_ms_per_event_with_its_transaction": round(cpu_ms, 3),
        "load_average_before": [round(x, 2) for x in load_before],
        "command": f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_handler --events {args.events}",
    })


if __name__ == "__main__":
    main()
