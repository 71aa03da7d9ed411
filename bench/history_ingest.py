"""Event-to-visible latency of payment-events at 500 events/s with 10% early children (issue 6),
beside the nack-and-redeliver approach on the same server, same machine, same stream.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_ingest [--rate 500] [--seconds 20]

The stream: trees purchase -> card transaction -> bill over 1,000 customers, delivered in batches
of 10 (one every 20 ms); in each batch one child is moved ahead of its parent (10% early).
Requests are dispatched on schedule by 48 client threads (keep-alive http.client).

Visible: an event is readable through the API once the transaction that applied it committed,
i.e. when the push that applied it answered: its own push, or for an early child the push of
the event it waited for (visible_at(e) = max(answer(e), visible_at(parent(e))), conservative).
Latency = visible_at - the moment the client started sending e.

nack mode (POST /bench/history-nack/payment-events, bench/history_nack_wsgi.py): a missing parent
rolls back and answers 409; like Pub/Sub with ordering keys, the nacked message and the later
messages of its batch are redelivered after --nack-backoff seconds (Pub/Sub retry policy default
minimum backoff: 10 s). Attempts = deliveries that reached the handler per event.
"""

import argparse
import base64
import http.client
import json
import os
import queue
import statistics
import threading
import time
from contextlib import closing

from bench.harness import ROOT, VENV_BIN, Server, bench_env, database_create, report

TOPIC = "payment-events"


def stream(rate: int, seconds: int) -> tuple[list[dict], dict[str, str]]:
    """Events in delivery order and each event's dependency (parent event_id)."""
    total = rate * seconds
    events, parent_of = [], {}
    n = 0
    while len(events) < total:
        customer = f"c-ing-{n % 1000}"
        t = f"2026-10-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z"
        pur = {"event_id": f"i-p-{n}", "type": "mercari.purchase", "payment_id": f"ip-{n}", "customer_id": customer,
               "amount": 1000 + n % 5000, "occurred_at": t, "attributes": {"item_name": f"item {n}"}}
        tx = {"event_id": f"i-t-{n}", "type": "mercard.transaction", "payment_id": f"it-{n}", "parent_id": f"ip-{n}",
              "customer_id": customer, "amount": pur["amount"], "occurred_at": t,
              "attributes": {"merchant_name": "Mercari"}}
        bill = {"event_id": f"i-b-{n}", "type": "mercard.billed", "payment_id": f"ib-{n}", "parent_id": f"it-{n}",
                "customer_id": customer, "amount": pur["amount"], "occurred_at": t}
        parent_of[tx["event_id"]] = pur["event_id"]
        parent_of[bill["event_id"]] = tx["event_id"]
        events += [pur, tx, bill]
        n += 1
    events = events[:total]
    batches = [events[i:i + 10] for i in range(0, total, 10)]
    for batch in batches:  # one child per batch goes before its parent: 10% early
        ids = [e["event_id"] for e in batch]
        for index in range(len(batch) - 1, 0, -1):
            parent = parent_of.get(batch[index]["event_id"])
            if parent in ids:
                batch.insert(ids.index(parent), batch.pop(index))
                break
    return [e for batch in batches for e in batch], parent_of


def body_of(event: dict, attempt: int) -> bytes:
    data = base64.b64encode(json.dumps(event).encode()).decode()
    return json.dumps({"message": {"data": data, "messageId": f"{event['event_id']}-{attempt}"},
                       "subscription": "projects/p/subscriptions/bench"}).encode()


class Client:
    """Dispatch requests at given times from a pool of keep-alive connections."""

    def __init__(self, port: int, path: str, headers: dict, threads: int = 48):
        self.port, self.path, self.headers = port, path, headers
        self.jobs: queue.Queue = queue.Queue()
        self.results: list[tuple] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while True:
            job = self.jobs.get()
            if job is None:
                return
            event, attempt = job
            started = time.monotonic()
            for _ in range(3):
                try:
                    conn.request("POST", self.path, body_of(event, attempt), self.headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            else:
                status = 0
            with self.lock:
                self.results.append((event["event_id"], attempt, started, time.monotonic(), status))

    def submit(self, event, attempt):
        self.jobs.put((event, attempt))

    def close(self):
        for _ in self.threads:
            self.jobs.put(None)
        for thread in self.threads:
            thread.join()


def run(port: int, path: str, headers: dict, events: list[dict], rate: int, nack_backoff: float | None) -> dict:
    client = Client(port, path, headers)
    interval = 1.0 / rate
    by_id = {e["event_id"]: e for e in events}
    batch_of = {e["event_id"]: i // 10 for i, e in enumerate(events)}
    pending: list[tuple[float, str, int]] = []  # redeliveries (due, event_id, attempt)
    seen_results = 0
    first_start: dict[str, float] = {}
    t0 = time.monotonic()
    index = 0
    deadline = t0 + len(events) / rate + (4 * nack_backoff + 30 if nack_backoff else 30)
    done: set[str] = set()
    while time.monotonic() < deadline:
        now = time.monotonic()
        while index < len(events) and t0 + index * interval <= now:
            first_start.setdefault(events[index]["event_id"], t0 + index * interval)
            client.submit(events[index], 1)
            index += 1
        if nack_backoff is not None:
            with client.lock:
                fresh = client.results[seen_results:]
                seen_results = len(client.results)
            for event_id, attempt, _, answered, status in fresh:
                if status == 409:  # nack: redeliver it and the later messages of its batch (ordering key)
                    batch = batch_of[event_id]
                    members = [e["event_id"] for e in events[batch * 10:batch * 10 + 10]]
                    for other in members[members.index(event_id):]:
                        pending.append((answered + nack_backoff, other, attempt + 1))
                elif status == 204:
                    done.add(event_id)
            due = [p for p in pending if p[0] <= now]
            pending = [p for p in pending if p[0] > now]
            for _, event_id, attempt in due:
                client.submit(by_id[event_id], attempt)
        if index >= len(events) and not pending and client.jobs.empty():
            with client.lock:
                if len(client.results) >= len(events) and (nack_backoff is None or len(done) >= len(events)):
                    break
        time.sleep(0.001)
    time.sleep(0.5)
    client.close()
    sent_seconds = len(events) / rate
    return {"results": client.results, "first_start": first_start, "sent_seconds": sent_seconds}


def latencies(events, parent_of, outcome, nack: bool) -> dict:
    answered: dict[str, float] = {}
    deliveries: dict[str, int] = {}
    for event_id, _, _, end, status in outcome["results"]:
        deliveries[event_id] = deliveries.get(event_id, 0) + 1
        if status == 204 and (event_id not in answered or end < answered[event_id]):
            if not nack or event_id not in answered:
                answered[event_id] = min(end, answered.get(event_id, end))
    visible: dict[str, float] = {}

    def visible_at(event_id):
        if event_id not in visible:
            own = answered.get(event_id)
            if own is None:
                return None
            parent = parent_of.get(event_id)
            parent_visible = visible_at(parent) if parent and not nack else None
            visible[event_id] = max(own, parent_visible) if parent_visible else own
        return visible[event_id]

    early = set()
    position = {e["event_id"]: i for i, e in enumerate(events)}
    for e in events:
        parent = parent_of.get(e["event_id"])
        if parent and position[parent] > position[e["event_id"]]:
            early.add(e["event_id"])
    all_ms, early_ms, missing = [], [], 0
    for e in events:
        v = visible_at(e["event_id"])
        if v is None:
            missing += 1
            continue
        ms = (v - outcome["first_start"][e["event_id"]]) * 1000
        all_ms.append(ms)
        if e["event_id"] in early:
            early_ms.append(ms)

    def pct(values):
        values = sorted(values)
        if not values:
            return {}
        return {"p50_ms": round(statistics.median(values), 1), "p99_ms": round(values[int(len(values) * 0.99) - 1], 1),
                "max_ms": round(values[-1], 1), "n": len(values)}

    return {"all": pct(all_ms), "early_children": pct(early_ms), "never_visible": missing,
            "early_share": round(len(early) / len(events), 3),
            "deliveries_per_event": round(sum(deliveries.values()) / len(events), 3),
            "dispatch_rate_per_s": round(len(events) / outcome["sent_seconds"], 1),
            # what the server actually absorbed: below the dispatch rate means a queue built up
            "served_rate_per_s": round(len(events) / (max(r[3] for r in outcome["results"])
                                                      - min(outcome["first_start"].values())), 1)}


def inbox_attempts(env, prefix: str) -> dict:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"])) as conn:
        row = conn.execute(
            "SELECT count(*), avg(attempts), max(attempts), count(*) FILTER (WHERE status <> 'processed') "
            "FROM inbox_inboxevent WHERE topic = %s AND event_id LIKE %s", [TOPIC, prefix + "%"]).fetchone()
    return {"events": row[0], "attempts_avg": float(row[1] or 0), "attempts_max": row[2], "not_processed": row[3]}


def reset(env) -> None:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"])) as conn:
        conn.execute("DELETE FROM history_paymenttransition WHERE entry_id IN "
                     "(SELECT id FROM history_paymententry WHERE customer_id LIKE 'c-ing-%%')")
        conn.execute("DELETE FROM history_paymententry WHERE customer_id LIKE 'c-ing-%%' AND parent_id IS NOT NULL "
                     "AND root_id IS NOT NULL AND type = 'mercard.transaction'")
        conn.execute("DELETE FROM history_paymententry WHERE customer_id LIKE 'c-ing-%%'")
        conn.execute("DELETE FROM inbox_inboxevent WHERE topic = %s AND event_id LIKE 'i-%%'", [TOPIC])
        conn.commit()


class NackServer(Server):
    def __enter__(self):
        import socket
        import subprocess

        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "bench.history_nack_wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), "--log-level", "warning", "--backlog", "2048"],
            cwd=ROOT, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with closing(socket.create_connection(("127.0.0.1", self.port), timeout=0.2)):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--nack-backoff", type=float, default=10.0)
    args = parser.parse_args()
    os.environ.setdefault("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mops_bench_history")
    env = bench_env()
    database_create(env)
    events, parent_of = stream(args.rate, args.seconds)
    headers = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}", "Content-Type": "application/json"}
    results = {}
    with NackServer(env=env, workers=args.workers, migrate=False) as server:
        for mode, path, backoff in (("inbox_waiting", f"/pubsub/push/{TOPIC}", None),
                                    ("nack_redeliver", f"/bench/history-nack/{TOPIC}", args.nack_backoff)):
            reset(env)
            warm = [dict(e, event_id="w" + e["event_id"], payment_id="w" + e["payment_id"],
                         **({"parent_id": "w" + e["parent_id"]} if e.get("parent_id") else {}))
                    for e in events[:300]]
            run(server.port, path, headers, warm, args.rate, backoff)  # warm-up (not measured)
            outcome = run(server.port, path, headers, events, args.rate, backoff)
            results[mode] = latencies(events, parent_of, outcome, nack=backoff is not None)
            results[mode]["inbox"] = inbox_attempts(env, "i-")
    report("Payment history: event-to-visible latency, 10% early children", {
        "rate_per_s": args.rate, "events": len(events), "gunicorn_workers": args.workers, **results,
        "command": f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_ingest --rate {args.rate} "
                   f"--seconds {args.seconds} --workers {args.workers} --nack-backoff {args.nack_backoff}",
    })


if __name__ == "__main__":
    main()
