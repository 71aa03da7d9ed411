"""Inbox ingestion vs a bare Django view, same gunicorn, same run (issue: Platform).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest [--duration 10] [--connections 64]
        [--rounds 3]

Rounds alternate bare view and push on the same server, so a burst of noise from other work
on the machine hits both sides alike; the share is reported per round and as the median.
Every push carries a new event_id (a per-run prefix), so each one is a real insert and commit:
repeating IDs from an earlier run would measure the duplicate path, which writes nothing.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mercari_ops_bench, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import statistics
import uuid

from bench.harness import Server, bench_env, report, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = bench_env()
    auth = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}"}
    rounds = []
    with Server(env=env) as server:
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        for number in range(args.rounds):
            run = uuid.uuid4().hex[:12]
            bare = wrk(server.url("/bench/bare"), method="POST", duration=args.duration,
                       connections=args.connections)
            inbox = wrk(server.url("/pubsub/push/platform-ping"), headers=auth, duration=args.duration,
                        connections=args.connections,
                        event_template='{"event_id": "bench-' + run + '-%d-%d-%d-%d"}')
            rounds.append({"round": number + 1, "bare_view": bare, "inbox_push": inbox,
                           "inbox_share_of_bare": round(inbox["rps"] / bare["rps"], 3)})
    report("Platform: inbox ingestion (no-op handler) vs bare view", {
        "gunicorn": f"{server.workers} workers x {server.threads} threads", "rounds": rounds,
        "median_share_of_bare": statistics.median(r["inbox_share_of_bare"] for r in rounds),
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds}",
    })


if __name__ == "__main__":
    main()
