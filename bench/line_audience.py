"""Audience job: a burst of linkages all reach `added` with zero 429s (issue 5, benchmark 3).

The job runs every 3 minutes in production; here the runs are started back to back
(as soon as the sandbox's jobs can have finished) so the run fits the time budget.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_audience [--linkages 100000] [--job-seconds 10]
        [--max-runs 8]

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_line, Redis db 5); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see bench.harness).
"""

import argparse
import json
import subprocess
import time

from bench.harness import report
from bench.line_common import Sandbox, line_env, manage_py, prepare, sql

RUN = ("import json; from line_integration.services import audience_sync; "
       "print('RESULT ' + json.dumps(audience_sync()))")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--linkages", type=int, default=100_000)
    parser.add_argument("--job-seconds", type=float, default=10.0)
    parser.add_argument("--max-runs", type=int, default=8)
    args = parser.parse_args()
    env = line_env()
    prepare(env)
    sql(env, [f"""INSERT INTO "LineLinkageUsers" ("LineID", "LineAudienceStatus", "Created", "Updated")
                  SELECT 'U' || lpad(to_hex(n), 32, '0'), 'pending', now(), now()
                  FROM generate_series(1, {args.linkages}) AS n"""])
    runs = []
    started = time.monotonic()
    with Sandbox(env, job_seconds=args.job_seconds) as sandbox:
        env["LINE_API_BASE"] = sandbox.url
        for _ in range(args.max_runs):
            out = manage_py(env, "shell", "-c", RUN, stdout=subprocess.PIPE, text=True).communicate()[0]
            result = json.loads(out.split("RESULT ", 1)[1])
            result["at_seconds"] = round(time.monotonic() - started, 1)
            runs.append(result)
            import psycopg

            with psycopg.connect(env["DATABASE_URL"]) as conn:
                remaining = conn.execute("""SELECT count(*) FROM "LineLinkageUsers"
                                            WHERE "LineAudienceStatus" <> 'added'""").fetchone()[0]
            result["not_added_after_run"] = remaining
            if remaining == 0:
                break
            time.sleep(args.job_seconds + 0.5)
        elapsed = time.monotonic() - started
        audience = sandbox.control("audience")
        stats = sandbox.control("stats")
    calls = {k: v for k, v in stats["status_counts"].items() if k.startswith("audience")}
    report("LINE: audience job, burst of linkages", {
        "linkages": args.linkages, "runs": runs, "elapsed_seconds": round(elapsed, 1),
        "sandbox_job_seconds": args.job_seconds, "audience_calls": calls,
        "max_calls_in_any_minute": audience["max_calls_per_minute"],
        "max_jobs_in_progress": audience["max_jobs_in_progress"], "jobs_refused": audience["jobs_refused"],
        "members_in_group": [g["members"] for g in audience["groups"]],
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_audience "
                   f"--linkages {args.linkages} --job-seconds {args.job_seconds}",
    })


if __name__ == "__main__":
    main()
