"""Inbox ingestion vs a bare Django view, same gunicorn, same run (issue: Platform).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest [--duration 3] [--connections 64]
        [--rounds 15] [--max-steal 0.1] [--auth token|oidc|both]

Many short rounds (bare view and push, the order rotating each round) on the same server, pooled: the
figure is the push's requests over the bare view's, summed over the rounds, with the CPU steal of every
wrk run recorded and rounds with more than --max-steal stolen run again (see `harness.rounds_interleaved`).
Every wrk run's pushes carry new event_ids (a per-run prefix), so each one is a real insert and commit:
repeating IDs from an earlier run would measure the duplicate path, which writes nothing.

`--auth oidc` runs the server as production does (PUBSUB_AUTH=oidc): pushes carry a Google-style ID
token (RS256) that the server checks against certificates from a local server in this process
(mercari_ops/inbox/tests/fake_google.py, Cache-Control max-age one hour). As Pub/Sub reuses a token for
up to an hour, one token signed at the start serves every request, so each worker fetches the
certificates and verifies the signature once, then finds the token in its cache. `--auth token` (the
default) is the static bearer token. PUBSUB_AUTH is per server, so `--auth both` runs the token rounds
on one server, then the oidc rounds on another, each against its own bare view and with its own figure.

Goal: pooled share >= 0.5 and no non-2xx answer (nor socket error) from the push.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mercari_ops_bench, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import itertools
import time
import uuid
from contextlib import ExitStack

from bench import harness
from bench.harness import Server, bench_env, report, wrk
from mercari_ops.inbox.tests.fake_google import (
    AUDIENCE,
    SERVICE_ACCOUNT,
    CertificateServer,
    google_claims,
    id_token,
    signing_key,
)

TARGET_SHARE = 0.5


def oidc_setup(stack: ExitStack) -> tuple[dict[str, str], dict[str, str]]:
    """(server environment, request headers) for PUBSUB_AUTH=oidc with a local certificate server."""
    key = signing_key("bench-key")
    certificates = stack.enter_context(CertificateServer([key], max_age=3600))
    env = bench_env(PUBSUB_AUTH="oidc", PUBSUB_OIDC_CERTS_URL=certificates.url, PUBSUB_OIDC_AUDIENCE=AUDIENCE,
                    PUBSUB_OIDC_SERVICE_ACCOUNTS=SERVICE_ACCOUNT)
    return env, {"Authorization": f"Bearer {id_token(key, google_claims(now=time.time()))}"}


def measure(auth_mode: str, args: argparse.Namespace) -> dict:
    """The interleaved rounds of bare view and push on a server with PUBSUB_AUTH=`auth_mode`."""
    with ExitStack() as stack:
        if auth_mode == "oidc":
            env, auth = oidc_setup(stack)
        else:
            env = bench_env()
            auth = {"Authorization": f"Bearer {env['PUBSUB_PUSH_TOKEN']}"}
        server = stack.enter_context(Server(env=env))
        run = uuid.uuid4().hex[:12]
        wrk(server.url("/bench/bare"), method="POST", duration=3, connections=args.connections)  # warm-up
        wrk(server.url("/pubsub/push/platform-ping"), headers=auth, duration=3, connections=args.connections,
            event_template='{"event_id": "bench-' + run + '-warm-%d-%d-%d-%d"}')
        slices = itertools.count()  # a new event_id prefix for every wrk run
        measured = harness.rounds_interleaved({
            "bare_view": lambda: wrk(server.url("/bench/bare"), method="POST", duration=args.duration,
                                     connections=args.connections),
            "inbox_push": lambda: wrk(
                server.url("/pubsub/push/platform-ping"), headers=auth, duration=args.duration,
                connections=args.connections,
                event_template='{"event_id": "bench-' + run + f'-{next(slices)}' + '-%d-%d-%d-%d"}'),
        }, rounds=args.rounds, baseline="bare_view", max_steal=args.max_steal)
    shares = measured["shares"]["inbox_push"]
    non2xx = sum(row["inbox_push"]["non2xx"] for row in measured["rounds"])
    errors = sum(row["inbox_push"]["errors"] for row in measured["rounds"])
    return {
        "gunicorn": f"{server.workers} workers x {server.threads} threads",
        "http": measured,
        "per_round": harness.rounds_digest(measured),
        "headline": {
            "pooled_share": shares["pooled_share"],
            "pooled_share_all_rounds": shares["pooled_share_all_rounds"],
            "rounds_accepted": measured["rounds_accepted"], "rounds_run": measured["rounds_run"],
            "push_non2xx": non2xx, "push_socket_errors": errors,
            "target_share": TARGET_SHARE,
            "target_met": shares["pooled_share"] is not None and shares["pooled_share"] >= TARGET_SHARE
            and non2xx == 0 and errors == 0,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-steal", type=float, default=0.1,
                        help="rounds in which the hypervisor stole more CPU than this from any run are run again")
    parser.add_argument("--auth", choices=["token", "oidc", "both"], default="token",
                        help="how pushes authenticate: the static token, Google's OIDC ID token as in production, "
                             "or both (one server after the other)")
    args = parser.parse_args()
    modes = ["token", "oidc"] if args.auth == "both" else [args.auth]
    results = {mode: measure(mode, args) for mode in modes}
    report("Platform: inbox ingestion (no-op handler) vs bare view", {
        "auth": results,
        "pooled_share": {mode: result["headline"]["pooled_share"] for mode, result in results.items()},
        "target_met": all(result["headline"]["target_met"] for result in results.values()),
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ingest "
                   f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds} "
                   f"--max-steal {args.max_steal} --auth {args.auth}",
    })


if __name__ == "__main__":
    main()
