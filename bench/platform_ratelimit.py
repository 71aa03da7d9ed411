"""Global rate limiter: grants/s it can hand out, and proof it never over-grants (issue: Platform).

    .venv/bin/python -m bench.platform_ratelimit [--processes 4] [--seconds 5]

Uses Redis (REDIS_URL, default redis://127.0.0.1:6379/9) with several processes hammering one key.
"""

import argparse
import json
import os
import subprocess
import sys
import uuid

from bench.harness import ROOT, bench_env, report
from mercari_ops.common.tests.test_ratelimit import max_in_any_window


def run(processes: int, limit: int, period: float, seconds: float, env: dict) -> dict:
    key = f"bench:{uuid.uuid4().hex}"
    procs = [subprocess.Popen([sys.executable, "-m", "mercari_ops.common.tests.limiter_worker", key, str(limit),
                               str(period), str(seconds), "1"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
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
    args = parser.parse_args()
    env = bench_env()
    os.environ.update(env)
    report("Platform: global rate limiter (Redis, sliding log)", {
        "ceiling (limit far above demand)": run(args.processes, 10_000_000, 1.0, args.seconds, env),
        "at 2,000/s (LINE push)": run(args.processes, 2000, 1.0, args.seconds, env),
        "at 60/min (LINE audience)": run(args.processes, 60, 60.0, args.seconds, env),
        "command": f".venv/bin/python -m bench.platform_ratelimit --processes {args.processes} "
                   f"--seconds {args.seconds}",
    })


if __name__ == "__main__":
    main()
