"""Event-to-visible latency of payment-events at 500 events/s with 10% early children (issue 6),
beside the nack-and-redeliver approach on the same server, same machine, same stream.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_ingest [--rate 500] [--seconds 20]
        [--workers 2] [--threads 32] [--connections 64]

The stream: trees purchase -> card transaction -> bill over 1,000 customers, delivered in batches
of 10 (one every 20 ms); in each batch one child is moved ahead of its parent (10% early).

The client is one asyncio process on raw sockets (no threads, no HTTP library): every request is
encoded before the clock starts, event i is due at t0 + i / rate (open loop: the schedule does not
wait for answers), and up to --connections requests are in flight, on kept-alive connections
when the server keeps them (gthread) and a new one per request otherwise (sync workers). Its own
CPU is reported (client_cpu_share_of_one_core), as is the CPU the server spent per event
(gunicorn master + workers, and the PostgreSQL backends of the bench database, from /proc).

Visible: an event is readable through the API once the transaction that applied it committed,
i.e. when the push that applied it answered: its own push, or for an early child the push of
the event it waited for. visible_at(e) = max(answer(e), visible_at(parent(e))), which is
conservative (an early child is applied inside its parent's transaction, never later than it).
Latency = visible_at - the time e was due (not when a connection became free, so time spent
queued in the client or the server counts). An event whose inbox row is not `processed` after
the run (still waiting, dead) is never visible, whatever its push answered.

nack mode (POST /bench/history-nack/payment-events, bench/history_nack_wsgi.py, same gunicorn):
a missing parent rolls back and answers 409; like Pub/Sub with ordering keys, the nacked message
and the later messages of its batch are redelivered after --nack-backoff seconds (Pub/Sub retry
policy default minimum backoff: 10 s), with the same messageId. Deliveries per event counts every
delivery that reached the server; attempts per event (inbox mode) is the inbox row's count of
handler runs.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_history, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import asyncio
import base64
import json
import os
import statistics
import time
from contextlib import closing
from pathlib import Path

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


def request_bytes(event: dict, path: str, token: str) -> bytes:
    """The whole HTTP/1.1 request, encoded once before the timed run.

    A redelivery reuses it: Pub/Sub redelivers a message with the same messageId.
    """
    data = base64.b64encode(json.dumps(event).encode()).decode()
    body = json.dumps({"message": {"data": data, "messageId": f"m-{event['event_id']}"},
                       "subscription": "projects/p/subscriptions/bench"}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def _exchange(port: int, conn, request: bytes):
    """Send one request on a kept-alive connection (opened when needed); (status, conn or None)."""
    if conn is None:
        conn = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = conn
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    length = int(headers.get("content-length", "0"))
    if length:
        await reader.readexactly(length)
    if headers.get("connection") == "close" or lines[0].startswith("HTTP/1.0"):
        writer.close()
        conn = None
    return status, conn


async def _dispatch(port: int, requests: list[bytes], rate: int, connections: int, nack_backoff: float | None,
                    timeout: float) -> dict:
    """Open loop: event i is due at t0 + i / rate whatever the answers; a bounded pool of connections sends.

    The measured latency starts at the due time, so a request that waits for a free connection or a
    busy server is charged for the wait (no coordinated omission).
    """
    loop = asyncio.get_running_loop()
    jobs: asyncio.Queue = asyncio.Queue()
    results: list[tuple[int, int, float, float, int]] = []  # (index, attempt, due, answered, status)
    applied: set[int] = set()
    total = len(requests)
    finished = asyncio.Event()

    def redeliver(index: int, attempt: int) -> None:
        jobs.put_nowait((index, attempt, loop.time()))

    async def sender():
        conn = None
        while True:
            index, attempt, due = await jobs.get()
            status = 0
            for _ in range(3):
                try:
                    status, conn = await _exchange(port, conn, requests[index])
                    break
                except (OSError, asyncio.IncompleteReadError, ValueError):
                    if conn is not None:
                        conn[1].close()
                    conn = None
            results.append((index, attempt, due, loop.time(), status))
            if status == 409 and nack_backoff is not None:
                # nack: Pub/Sub with an ordering key redelivers it and the later messages of its batch
                batch = index // 10
                for other in range(index, min(batch * 10 + 10, total)):
                    loop.call_later(nack_backoff, redeliver, other, attempt + 1)
            elif 200 <= status < 300:
                applied.add(index)
                if len(applied) == total:
                    finished.set()

    senders = [asyncio.create_task(sender()) for _ in range(connections)]
    t0 = loop.time() + 0.05
    for index in range(total):
        due = t0 + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        jobs.put_nowait((index, 1, due))
    try:
        await asyncio.wait_for(finished.wait(), timeout)
    except TimeoutError:
        pass
    for task in senders:
        task.cancel()
    return {"results": results, "t0": t0}


def run(port: int, path: str, token: str, events: list[dict], rate: int, nack_backoff: float | None,
        connections: int) -> dict:
    requests = [request_bytes(event, path, token) for event in events]  # before the clock starts
    timeout = len(events) / rate + (6 * nack_backoff + 60 if nack_backoff else 60)
    cpu_before = time.process_time()
    outcome = asyncio.run(_dispatch(port, requests, rate, connections, nack_backoff, timeout))
    outcome["client_cpu_s"] = time.process_time() - cpu_before
    outcome["sent_seconds"] = len(events) / rate
    return outcome


def latencies(events, parent_of, outcome, nack: bool, applied: set[str]) -> dict:
    """Event-to-visible latency per event (see the module docstring for the definition).

    `applied`: event_ids whose inbox row is processed after the run; an answered event that is not
    (still waiting, dead) counts as never visible, whatever its answer said.
    """
    index_of = {e["event_id"]: i for i, e in enumerate(events)}
    answered: dict[int, float] = {}  # the first 2xx answer of each event
    deliveries = [0] * len(events)
    for index, _, _, end, status in outcome["results"]:
        deliveries[index] += 1
        if 200 <= status < 300 and events[index]["event_id"] in applied and (
                index not in answered or end < answered[index]):
            answered[index] = end
    visible: dict[int, float | None] = {}

    def visible_at(index: int) -> float | None:
        if index not in visible:
            own = answered.get(index)
            parent = parent_of.get(events[index]["event_id"])
            parent_visible = visible_at(index_of[parent]) if parent and not nack and own is not None else None
            visible[index] = max(own, parent_visible) if own is not None and parent_visible else own
        return visible[index]

    early = {i for i, e in enumerate(events)
             if parent_of.get(e["event_id"]) and index_of[parent_of[e["event_id"]]] > i}
    t0, rate = outcome["t0"], len(events) / outcome["sent_seconds"]
    all_ms, early_ms, missing = [], [], 0
    for index in range(len(events)):
        v = visible_at(index)
        if v is None:
            missing += 1
            continue
        ms = (v - (t0 + index / rate)) * 1000
        all_ms.append(ms)
        if index in early:
            early_ms.append(ms)

    def pct(values):
        values = sorted(values)
        if not values:
            return {}
        return {"p50_ms": round(statistics.median(values), 1),
                "p99_ms": round(values[max(int(len(values) * 0.99) - 1, 0)], 1),
                "max_ms": round(values[-1], 1), "n": len(values)}

    last_answer = max(r[3] for r in outcome["results"])
    return {"all": pct(all_ms), "early_children": pct(early_ms), "never_visible": missing,
            "early_share": round(len(early) / len(events), 3),
            "deliveries_per_event": round(sum(deliveries) / len(events), 3),
            "dispatch_rate_per_s": round(rate, 1),
            # what the server actually absorbed: below the dispatch rate means a queue built up
            "served_rate_per_s": round(len(events) / (last_answer - t0), 1),
            "client_cpu_share_of_one_core": round(outcome["client_cpu_s"] / (last_answer - t0), 3)}


def inbox_attempts(env, prefix: str) -> tuple[dict, set[str]]:
    """Handler runs per event from the inbox rows, and the event_ids whose row is processed."""
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"])) as conn:
        row = conn.execute(
            "SELECT count(*), avg(attempts), max(attempts), count(*) FILTER (WHERE status <> 'processed') "
            "FROM inbox_inboxevent WHERE topic = %s AND event_id LIKE %s", [TOPIC, prefix + "%"]).fetchone()
        applied = {r[0] for r in conn.execute(
            "SELECT event_id FROM inbox_inboxevent WHERE topic = %s AND event_id LIKE %s AND status = 'processed'",
            [TOPIC, prefix + "%"])}
    return ({"events": row[0], "attempts_avg": round(float(row[1] or 0), 4), "attempts_max": row[2],
             "not_processed": row[3]}, applied)


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
        # Vacuum now rather than whenever autovacuum gets to it: otherwise the dead rows of the earlier run
        # may still be in the tables and indexes, and this run pays for walking past them (or not,
        # depending on autovacuum's timing, which would make runs differ for no reason of their own).
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE history_paymenttransition, history_paymententry, inbox_inboxevent")


def _cpu_seconds(pids) -> float:
    """utime + stime of processes that are alive now (/proc), in seconds."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


class NackServer(Server):
    """gunicorn serving the project plus the nack endpoint: one server, the same config for both approaches."""

    def __init__(self, *, threads: int, **kwargs):
        super().__init__(**kwargs)
        self.threads = threads

    def __enter__(self):
        import socket
        import subprocess

        worker = ["--worker-class", "gthread", "--threads", str(self.threads)] if self.threads > 1 else []
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gunicorn"), "bench.history_nack_wsgi", "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(self.workers), *worker, "--log-level", "warning", "--backlog", "2048"],
            cwd=ROOT, env=self.env)
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with closing(socket.create_connection(("127.0.0.1", self.port), timeout=0.2)):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start")

    def cpu_pids(self) -> tuple[list[int], list[int]]:
        """The gunicorn master and workers, and the PostgreSQL backends connected to the bench database."""
        import psycopg

        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        with closing(psycopg.connect(self.env["DATABASE_URL"])) as conn:
            backends = [row[0] for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        return [self.proc.pid, *map(int, children)], backends


def measured(server: NackServer, path: str, token: str, events: list[dict], rate: int, backoff: float | None,
             connections: int) -> dict:
    web, db = server.cpu_pids()  # workers and their connections exist since the warm-up (CONN_MAX_AGE)
    web_before, db_before = _cpu_seconds(web), _cpu_seconds(db)
    outcome = run(server.port, path, token, events, rate, backoff, connections)
    outcome["server_cpu_ms_per_event"] = {
        "gunicorn": round((_cpu_seconds(web) - web_before) * 1000 / len(events), 2),
        "postgres": round((_cpu_seconds(db) - db_before) * 1000 / len(events), 2),
    }
    return outcome


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=32, help="threads per worker (gthread when > 1; the Procfile's)")
    parser.add_argument("--connections", type=int, default=64, help="client connections (in-flight requests)")
    parser.add_argument("--nack-backoff", type=float, default=10.0)
    parser.add_argument("--modes", default="inbox_waiting,nack_redeliver")
    args = parser.parse_args()
    load_before = os.getloadavg()
    # Group commit on, as in production; GROUP_COMMIT=0 measures the one-transaction-per-push path.
    env = bench_env("mops_bench_history", GROUP_COMMIT=os.environ.get("GROUP_COMMIT", "1"))
    database_create(env)
    events, parent_of = stream(args.rate, args.seconds)
    token = env["PUBSUB_PUSH_TOKEN"]
    modes = {"inbox_waiting": (f"/pubsub/push/{TOPIC}", None),
             "nack_redeliver": (f"/bench/history-nack/{TOPIC}", args.nack_backoff)}
    results = {}
    with NackServer(env=env, workers=args.workers, threads=args.threads, migrate=False) as server:
        for mode in args.modes.split(","):
            path, backoff = modes[mode]
            reset(env)
            warm = [dict(e, event_id="w" + e["event_id"], payment_id="w" + e["payment_id"],
                         **({"parent_id": "w" + e["parent_id"]} if e.get("parent_id") else {}))
                    for e in events[:500]]
            run(server.port, path, token, warm, args.rate, backoff, args.connections)  # warm-up (not measured)
            outcome = measured(server, path, token, events, args.rate, backoff, args.connections)
            inbox, applied = inbox_attempts(env, "i-")
            results[mode] = latencies(events, parent_of, outcome, nack=backoff is not None, applied=applied)
            results[mode]["server_cpu_ms_per_event"] = outcome["server_cpu_ms_per_event"]
            results[mode]["inbox"] = inbox
    report("Payment history: event-to-visible latency, 10% early children", {
        "rate_per_s": args.rate, "events": len(events), "gunicorn_workers": args.workers,
        "gunicorn_threads": args.threads, "client_connections": args.connections,
        "inbox_group_commit": env["GROUP_COMMIT"],
        "load_average_before": [round(x, 2) for x in load_before], **results,
        "command": f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_ingest --rate {args.rate} "
                   f"--seconds {args.seconds} --workers {args.workers} --threads {args.threads} "
                   f"--connections {args.connections} --nack-backoff {args.nack_backoff}"
                   + (f" --modes {args.modes}" if args.modes != "inbox_waiting,nack_redeliver" else ""),
    })


if __name__ == "__main__":
    main()
