"""Braze webhook ingestion vs the bare view, same gunicorn, same run (issue 5, benchmark 1).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_braze_ingest [--duration 3] [--connections 64]
        [--rounds 15] [--max-steal 0.1]

Many short rounds (bare view and webhook, the order rotating each round) on the same server, pooled: the
figure is the webhook's requests over the bare view's, summed over the rounds, with the CPU steal of every
wrk run recorded and rounds with more than --max-steal stolen run again (see `harness.rounds_interleaved`).
Every wrk run sends a new dispatch_id, so every request records a new message (none is a duplicate of an
earlier run). Goal: pooled share >= 0.5 and no non-2xx answer (nor socket error) from the webhook.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_line, Redis db 5); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see bench.harness).
"""

import argparse
import itertools

from bench import harness
from bench.harness import Server, report, wrk
from bench.line_common import line_env, link_users, prepare

TARGET_SHARE = 0.5


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-steal", type=float, default=0.1,
                        help="rounds in which the hypervisor stole more CPU than this from any run are run again")
    args = parser.parse_args()
    env = line_env()
    auth = {"Authorization": f"Bearer {env['BRAZE_WEBHOOK_TOKEN']}"}
    prepare(env)
    link_users(env, "b-0-", 200_000)  # wrk thread 0 sends users b-0-1, b-0-2, ...: every one linked
    body = ('{"user_id": "b-%d-%d", "dispatch_id": "d-bench-RUN", "campaign_id": "braze-bench", '
            '"template": "saved_search_new_items", "params": {"search_id": "s-5"}}')
    with Server(env=env, migrate=False) as server:
        url = server.url("/line/braze/webhook")
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        wrk(url, method="POST", headers=auth, duration=3, connections=args.connections,
            body_template=body.replace("RUN", "warm"))
        slices = itertools.count()  # a new dispatch_id for every wrk run
        measured = harness.rounds_interleaved({
            "bare_view": lambda: wrk(server.url("/bench/bare"), method="POST", duration=args.duration,
                                     connections=args.connections),
            "braze_webhook": lambda: wrk(url, method="POST", headers=auth, duration=args.duration,
                                         connections=args.connections,
                                         body_template=body.replace("RUN", str(next(slices)))),
        }, rounds=args.rounds, baseline="bare_view", max_steal=args.max_steal)
    shares = measured["shares"]["braze_webhook"]
    non2xx = sum(row["braze_webhook"]["non2xx"] for row in measured["rounds"])
    errors = sum(row["braze_webhook"]["errors"] for row in measured["rounds"])
    report("LINE: Braze webhook (linked customer, queued) vs bare view", {
        "gunicorn": f"{server.workers} workers x {server.threads} threads",
        "http": measured,
        "per_round": harness.rounds_digest(measured),
        "pooled_share": shares["pooled_share"],
        "pooled_share_all_rounds": shares["pooled_share_all_rounds"],
        "rounds_accepted": measured["rounds_accepted"], "rounds_run": measured["rounds_run"],
        "braze_non2xx": non2xx, "braze_socket_errors": errors,
        "target_share": TARGET_SHARE,
        "target_met": shares["pooled_share"] is not None and shares["pooled_share"] >= TARGET_SHARE
        and non2xx == 0 and errors == 0,
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_braze_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds} "
                   f"--max-steal {args.max_steal}",
    })


if __name__ == "__main__":
    main()
