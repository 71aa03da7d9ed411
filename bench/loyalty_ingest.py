"""Loyalty ingestion on PostgreSQL (issue: Loyalty).

1. `POST /pubsub/push/loyalty-activity` through gunicorn (threaded, as in the Procfile) vs the bare
   view `POST /bench/bare`, same server, same run. Target: >= 50% of the bare view. Measured in many
   short rounds (bare view, no-op push, loyalty push, the order rotating each round) and pooled, with
   the CPU steal of each run: see `harness.rounds_interleaved` for why.
2. `manage.py ingest_jsonl loyalty-activity <file>` (batched). Target: >= 10,000 events/s.
   Then the same file again (every event a duplicate), the re-feed case of a partial backfill.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.loyalty_ingest [--duration 3] [--connections 64]
        [--rounds 15] [--max-steal 0.1] [--customers 2000] [--events 300000] [--jsonl-customers 20000]
        [--batch-size 2000] [--workers 2]

    --rounds 0: only the ingest_jsonl part; --events 0: only the HTTP part.

The demo stage rules are published first so every event runs the real stage evaluation.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_loyalty, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import itertools
import json
import os
import random
import subprocess
import tempfile
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta

from bench import harness
from bench.harness import ROOT, VENV_BIN, Server, bench_env, database_create, manage, parse_wrk, report, wrk

DATABASE = "mops_bench_loyalty"

SETUP = """
from loyalty.demo import DEMO_RULES
from loyalty.models import StageRuleVersion
from loyalty.services import rules_version_publish
if not StageRuleVersion.objects.exists():
    rules_version_publish(definition=DEMO_RULES, by="bench")
"""


def reset(env: dict) -> None:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"], autocommit=True)) as conn:
        conn.execute("TRUNCATE loyalty_stagechange, loyalty_stagepin, loyalty_monthlytotal, loyalty_customer")
        conn.execute("DELETE FROM inbox_inboxevent WHERE topic = 'loyalty-activity'")
        conn.execute("VACUUM ANALYZE")


def stage_changes_count(env: dict) -> int:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"])) as conn:
        return conn.execute("SELECT count(*) FROM loyalty_stagechange").fetchone()[0]


def wrk_loyalty(url: str, *, auth: dict, run: str, occurred_at: str, customers: int, duration: int,
                connections: int) -> dict:
    """wrk with a unique event per request, customers cycling over `customers` IDs."""
    template = ('{"event_id": "' + run + '-%d-%d", "customer_id": "bench-c-%d-%d", "kind": "buy", '
                '"amount": 1200, "occurred_at": "' + occurred_at + '"}')
    header_lines = "\n".join(f'wrk.headers["{k}"] = {harness._lua_string(v)}' for k, v in auth.items())
    script = harness._LUA_PUBSUB.format(headers=header_lines, template=harness._lua_string(template))
    script = script.replace("tid, counter, tid, counter)", f"tid, counter, tid, counter % {customers})")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    cmd = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{duration}s", "--latency", "-s", handle.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    os.unlink(handle.name)
    return parse_wrk(out)


def jsonl_write(path: str, events: int, customers: int) -> None:
    rng = random.Random(7)
    start = datetime(2013, 7, 1, tzinfo=UTC)
    span = int((datetime.now(UTC) - timedelta(days=1) - start).total_seconds())
    kinds = ("buy", "sell", "pay")
    with open(path, "w") as handle:
        for n in range(events):
            at = start + timedelta(seconds=rng.randrange(span))
            amount = rng.randint(100, 30000) * (-1 if rng.random() < 0.03 else 1)
            handle.write(json.dumps({
                "event_id": f"jsonl-{n}", "customer_id": f"c-{rng.randrange(customers):06d}",
                "kind": kinds[n % 3], "amount": amount, "occurred_at": at.isoformat().replace("+00:00", "Z"),
            }) + "\n")


def ingest(env: dict, path: str, batch_size: int, workers: int) -> float:
    started = time.perf_counter()
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "ingest_jsonl", "loyalty-activity", path,
                    "--no-progress", "--batch-size", str(batch_size), "--workers", str(workers)], cwd=ROOT, env=env,
                   check=True,
                   capture_output=True, text=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-steal", type=float, default=0.1,
                        help="rounds in which the hypervisor stole more CPU than this from any run are run again")
    parser.add_argument("--customers", type=int, default=2000, help="distinct customers in the HTTP run")
    parser.add_argument("--events", type=int, default=300_000, help="events in the ingest_jsonl file")
    parser.add_argument("--jsonl-customers", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2, help="ingest_jsonl --workers (parallel connections)")
    args = parser.parse_args()
    env = bench_env(DATABASE)
    database_create(env)
    manage("shell", "-c", SETUP, env=env)
    reset(env)
    auth = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}"}
    occurred_at = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    run = uuid.uuid4().hex[:8]
    with Server(env=env, migrate=False) as server:  # --rounds 0: only the ingest_jsonl part
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        # warm-up of the push paths too: connections, prepared statements, and the customers' first events
        # (which create them) happen before the measured rounds, as they would long before in production
        wrk(server.url("/pubsub/push/platform-ping"), headers=auth, duration=3, connections=args.connections,
            event_template='{"event_id": "ping-warm-' + uuid.uuid4().hex[:8] + '-%d-%d-%d-%d"}')
        wrk_loyalty(server.url("/pubsub/push/loyalty-activity"), auth=auth, run="warm-" + uuid.uuid4().hex[:8],
                    occurred_at=occurred_at, customers=args.customers, duration=3, connections=args.connections)
        slices = itertools.count()  # a new event_id prefix for every wrk run
        measured = harness.rounds_interleaved({
            "bare_view": lambda: wrk(server.url("/bench/bare"), method="POST", duration=args.duration,
                                     connections=args.connections),
            "platform_ping_push": lambda: wrk(
                server.url("/pubsub/push/platform-ping"), headers=auth, duration=args.duration,
                connections=args.connections,
                event_template='{"event_id": "ping-' + run + f'-{next(slices)}' + '-%d-%d-%d-%d"}'),
            "loyalty_push": lambda: wrk_loyalty(
                server.url("/pubsub/push/loyalty-activity"), auth=auth, run=f"{run}-{next(slices)}",
                occurred_at=occurred_at, customers=args.customers, duration=args.duration,
                connections=args.connections),
        }, rounds=args.rounds, baseline="bare_view", max_steal=args.max_steal) if args.rounds else None
    rounds = measured["rounds"] if measured else []
    stage_changes = stage_changes_count(env)
    reset(env)
    jsonl = None
    if args.events:  # --events 0: only the HTTP part
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "events.jsonl")
            jsonl_write(path, args.events, args.jsonl_customers)
            first = ingest(env, path, args.batch_size, args.workers)
            again = ingest(env, path, args.batch_size, args.workers)
        jsonl = {"events": args.events, "customers": args.jsonl_customers, "batch_size": args.batch_size,
                 "workers": args.workers, "seconds": round(first, 2), "events_per_s": round(args.events / first),
                 "target_met": args.events / first >= 10_000, "refeed_all_duplicates_seconds": round(again, 2),
                 "refeed_events_per_s": round(args.events / again),
                 "note": "wall time of the whole command, Django start-up included"}
    report("Loyalty: ingestion on PostgreSQL", {
        "gunicorn": f"{server.workers} workers x {server.threads} threads",
        "http": measured,
        "push_non2xx": sum(r["loyalty_push"]["non2xx"] for r in rounds),
        # each upgrade adds two writes to its group: with few customers, many events cross a threshold
        "stage_changes_during_http_runs": stage_changes,
        "loyalty_events_during_http_runs": sum(r["loyalty_push"]["requests"] for r in rounds),
        "target_met": measured["shares"]["loyalty_push"]["pooled_share"] >= 0.5 if measured else None,
        "ingest_jsonl": jsonl,
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.loyalty_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds} "
                   f"--max-steal {args.max_steal} --customers {args.customers} --events {args.events} "
                   f"--jsonl-customers {args.jsonl_customers} --batch-size {args.batch_size} --workers {args.workers}",
    })


if __name__ == "__main__":
    main()
