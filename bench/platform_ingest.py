"""Inbox ingestion vs a bare Django view, same gunicorn, same run (issue: Platform).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest [--duration 10] [--connections 64]
        [--rounds 3] [--auth token|oidc]

Rounds alternate bare view and push on the same server, so a burst of noise from other work
on the machine hits both sides alike; the share is reported per round and as the median.
Every push carries a new event_id (a per-run prefix), so each one is a real insert and commit:
repeating IDs from an earlier run would measure the duplicate path, which writes nothing.

`--auth oidc` runs the server as production does (PUBSUB_AUTH=oidc): pushes carry a Google-style ID
token (RS256) that the server checks against certificates from a local server in this process
(mercari_ops/inbox/tests/fake_google.py, Cache-Control max-age one hour). As Pub/Sub reuses a token for
up to an hour, one token signed at the start serves every request, so each worker fetches the
certificates and verifies the signature once, then finds the token in its cache. `--auth token` (the
default) is the static bearer token.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mercari_ops_bench, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import statistics
import time
import uuid
from contextlib import ExitStack

from bench.harness import Server, bench_env, report, wrk
from mercari_ops.inbox.tests.fake_google import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    CertificateServer,
    google_claims,
    id_token,
    signing_key,
)


def oidc_setup(stack: ExitStack) -> tuple[dict[str, str], dict[str, str]]:
    """(server environment, request headers) for PUBSUB_AUTH=oidc with a local certificate server."""
    key = signing_key("bench-key")
    certificates = stack.enter_context(CertificateServer([key], max_age=3600))
    env = bench_env(PUBSUB_AUTH="oidc", PUBSUB_OIDC_CERTS_URL=certificates.url, PUBSUB_OIDC_AUDIENCE=AUDIENCE,
                    PUBSUB_OIDC_SERVICE_ACCOUNTS=SERVICE_ACCOUNT)
    return env, {"Authorization": f"Bearer {id_token(key, google_claims(now=time.time()))}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--auth", choices=["token", "oidc"], default="token",
                        help="how pushes authenticate: the static token, or Google's OIDC ID token as in production")
    args = parser.parse_args()
    rounds = []
    with ExitStack() as stack:
        if args.auth == "oidc":
            env, auth = oidc_setup(stack)
        else:
            env = bench_env()
            auth = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}"}
        server = stack.enter_context(Server(env=env))
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
        "gunicorn": f"{server.workers} workers x {server.threads} threads", "auth": args.auth, "rounds": rounds,
        "median_share_of_bare": statistics.median(r["inbox_share_of_bare"] for r in rounds),
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds} "
                   f"--auth {args.auth}",
    })


if __name__ == "__main__":
    main()
