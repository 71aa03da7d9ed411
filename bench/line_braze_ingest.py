"""Braze webhook ingestion vs the bare view, same gunicorn, same run (issue 5, benchmark 1).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_braze_ingest [--duration 10] [--connections 64]
        [--rounds 3]

Rounds alternate the bare view and the webhook on the same server (noise hits both alike); each round
sends a new dispatch_id, so every request records a new message (none is a duplicate of an earlier round).

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_line, Redis db 5); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see bench.harness).
"""

import argparse
import statistics

from bench.harness import Server, report, wrk
from bench.line_common import line_env, link_users, prepare


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    env = line_env()
    auth = {"Authorization": f"Bearer {env['BRAZE_WEBHOOK_TOKEN']}"}
    prepare(env)
    link_users(env, "b-0-", 200_000)  # wrk thread 0 sends users b-0-1, b-0-2, ...: every one linked
    body = ('{"user_id": "b-%d-%d", "dispatch_id": "d-bench-ROUND", "campaign_id": "braze-bench", '
            '"template": "saved_search_new_items", "params": {"search_id": "s-5"}}')
    rounds = []
    with Server(env=env, migrate=False) as server:
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        for number in range(args.rounds):
            bare = wrk(server.url("/bench/bare"), method="POST", duration=args.duration,
                       connections=args.connections)
            braze = wrk(server.url("/line/braze/webhook"), method="POST", headers=auth, duration=args.duration,
                        connections=args.connections, body_template=body.replace("ROUND", str(number)))
            rounds.append({"round": number + 1, "bare_view": bare, "braze_webhook": braze,
                           "braze_share_of_bare": round(braze["rps"] / bare["rps"], 3)})
    report("LINE: Braze webhook (linked customer, queued) vs bare view", {
        "gunicorn": f"{server.workers} workers x {server.threads} threads", "rounds": rounds,
        "median_braze_share_of_bare": statistics.median(r["braze_share_of_bare"] for r in rounds),
        "target_share": 0.5,
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_braze_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds}",
    })


if __name__ == "__main__":
    main()
