"""Global rate limiter: grants/s it can hand out, and proof it never over-grants (issue: Platform).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ratelimit [--processes 4] [--seconds 5]

Uses the embedded Redis under var/bench (db 9; BENCH_REDIS_URL overrides) with several processes hammering one key on
Redis's own clock, in real time: the throughput is the figure. (The tests assert the same limits on a
manual clock, exactly; mercari_ops/common/tests/test_ratelimit.py.)
"""

import argparse
import json
import os
import subprocess
import sys
import time
import uuid

from bench.harness import ROOT, bench_env, report
from mercari_ops.common.tests.test_ratelimit import max_in_any_window


def hammer(key: str, limit: int, period: float, seconds: float) -> None:
    """One of the hammering processes: acquire on `key` as fast as possible; print the limiter's grant times."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
    django.setup()
    from mercari_ops.common.ratelimit import rate_limiter

    limiter, grants = rate_limiter(), []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        granted, at = limiter.acquire_at(key, limit=limit, period=period)
        if granted:
            grants.append(at)
    print(json.dumps(grants))


def run(processes: int, limit: int, period: float, seconds: float, env: dict) -> dict:
    key = f"bench:{uuid.uuid4().hex}"
    procs = [subprocess.Popen([sys.executable, "-m", "bench.platform_ratelimit", "--hammer", key, str(limit),
                               str(period), str(seconds)], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    grants: list[float] = []
    for proc in procs:
        grants += json.loads(proc.communicate()[0])
    span = max(grants) - min(grants) if grants else 0
    return {"limit_per_period": limit, "period_s": period, "granted": len(grants),
            "granted_per_s": round(len(grants) / span, 1) if span >= period else None,
            "max_in_any_sliding_window": max_in_any_window(grants, period),
            "over_granted": max_in_any_window(grants, period) > limit}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--hammer", nargs=4, metavar=("KEY", "LIMIT", "PERIOD", "SECONDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hammer:
        key, limit, period, seconds = args.hammer
        hammer(key, int(limit), float(period), float(seconds))
        return
    env = bench_env()
    os.environ.update(env)
    report("Platform: global rate limiter (Redis, sliding log)", {
        "ceiling (limit far above demand)": run(args.processes, 10_000_000, 1.0, args.seconds, env),
        "at 2,000/s (LINE push)": run(args.processes, 2000, 1.0, args.seconds, env),
        "at 60/min (LINE audience)": run(args.processes, 60, 60.0, args.seconds, env),
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.platform_ratelimit "
                   f"--processes {args.processes} --seconds {args.seconds}",
    })


if __name__ == "__main__":
    main()
