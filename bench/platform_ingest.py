"""Inbox ingestion vs a bare Django view, same gunicorn, same run (issue: Platform).

    .venv/bin/python -m bench.platform_ingest [--duration 15] [--connections 16]
"""

import argparse

from bench.harness import Server, bench_env, report, wrk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    env = bench_env()
    auth = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}"}
    with Server(env=env) as server:
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        bare = wrk(server.url("/bench/bare"), method="POST", duration=args.duration, connections=args.connections)
        inbox = wrk(server.url("/pubsub/push/platform-ping"), headers=auth, duration=args.duration,
                    connections=args.connections, event_template='{"event_id": "bench-%d-%d-%d-%d"}')
    report("Platform: inbox ingestion (no-op handler) vs bare view", {
        "bare_view": bare, "inbox_push": inbox,
        "inbox_share_of_bare": round(inbox["rps"] / bare["rps"], 3),
        "command": ".venv/bin/python -m bench.platform_ingest "
                   f"--duration {args.duration} --connections {args.connections}",
    })


if __name__ == "__main__":
    main()
