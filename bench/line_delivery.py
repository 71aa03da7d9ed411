"""Delivery through the LINE sandbox (issue 5, benchmark 2).

1. N personalized messages with the push limit at 1,000/s: achieved rate, max in any 1-s window, 429s.
2. The same N with no client-side limit (sandbox limit lifted too): the sender's ceiling.
3. M identical messages: coalesced into multicasts of 500; API calls and wall time.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_delivery [--messages 200000] [--identical 1000000]
        [--processes 2] [--threads 8] [--phases limited,unlimited,multicast]
        # BENCH_ARRIVALS_FILE=path: 50-ms arrival bins of the last phase

Runs on the embedded PostgreSQL and Redis under var/bench (database mops_bench_line, Redis db 5), started
and stopped by the bench; BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see bench.harness).
"""

import argparse
import json
import os
import time
from contextlib import closing
from pathlib import Path

from bench.harness import report
from bench.line_common import Sandbox, line_env, link_users, manage_py, prepare, reset_limiter, sql


def enqueue(env: dict, *, count: int, dispatch: str, personal: bool) -> None:
    search = "'s-' || n" if personal else "'s-same'"
    sql(env, [f"""INSERT INTO line_integration_outboundmessage
                   (dispatch_id, user_id, campaign_id, template, params, line_user_id, kind, status, reason, created_at)
                  SELECT '{dispatch}', 'u-' || n, 'bench', 'saved_search_new_items',
                         jsonb_build_object('search_id', {search}), 'U' || lpad(to_hex(n), 32, '0'), 'braze',
                         'queued', '', now()
                  FROM generate_series(1, {count}) AS n"""])


def statuses(env: dict, dispatch: str) -> dict:
    import psycopg

    with closing(psycopg.connect(env["DATABASE_URL"])) as conn:
        rows = conn.execute("SELECT status, count(*) FROM line_integration_outboundmessage WHERE dispatch_id = %s "
                            "GROUP BY status", [dispatch]).fetchall()
    return dict(rows)


def run_senders(env: dict, processes: int) -> tuple[float, float]:
    """Wall seconds and the CPU seconds the sender processes used."""
    started = time.monotonic()
    procs = [manage_py(env, "line_send", "--seconds", "900") for _ in range(processes)]
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    return time.monotonic() - started, cpu


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> float:
    """CPU seconds all processes on the machine used so far (ours, PostgreSQL, Redis, anyone else's)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def phase(sandbox: Sandbox, env: dict, *, count: int, personal: bool, processes: int, dispatch: str) -> dict:
    sandbox.control("reset", {"keep_config": True})
    reset_limiter(env)
    enqueue(env, count=count, dispatch=dispatch, personal=personal)
    sandbox_cpu, busy = process_cpu(sandbox.proc.pid), machine_busy()
    wall, sender_cpu = run_senders(env, processes)
    sandbox_cpu, busy = process_cpu(sandbox.proc.pid) - sandbox_cpu, machine_busy() - busy
    stats = sandbox.control("stats")
    kind = "push" if personal else "multicast"
    first, last = stats["first_request_at"].get(kind), stats["last_request_at"].get(kind)
    span = (last - first) if first and last else None
    calls = sum(stats["status_counts"].get(kind, {}).values())
    per_second = sandbox.control(f"arrivals?endpoint={kind}&bin=1.0")["counts"]
    if os.environ.get("BENCH_ARRIVALS_FILE"):  # 50-ms bins, for looking at the pacing over time
        Path(os.environ["BENCH_ARRIVALS_FILE"]).write_text(
            json.dumps(sandbox.control(f"arrivals?endpoint={kind}&bin=0.05")["counts"]))
    return {"messages": count, "message_statuses": statuses(env, dispatch), "api_calls": calls,
             "status_counts": stats["status_counts"].get(kind),
            "deliveries": stats["deliveries"], "recipients_delivered_more_than_once":
            stats["recipients_delivered_more_than_once"], "wall_seconds_incl_startup": round(wall, 2),
            "first_to_last_request_seconds": round(span, 2) if span else None,
            "achieved_requests_per_second": round((calls - 1) / span, 1) if span else None,
            "max_requests_in_any_1s_window": stats["max_requests_per_window"].get(kind),
            "requests_per_aligned_second": _spread(per_second),
            "cpu_ms_per_api_call": {"senders": round(1000 * sender_cpu / calls, 3),
                                    "sandbox": round(1000 * sandbox_cpu / calls, 3),
                                    "whole_machine": round(1000 * busy / calls, 3)}}


def _spread(counts: list[int]) -> dict:
    """Min / median / max of the per-second counts, leaving out the first and last (partial) seconds."""
    inner = sorted(counts[1:-1])
    if not inner:
        return {}
    return {"seconds": len(counts), "min": inner[0], "median": inner[len(inner) // 2], "max": inner[-1],
            "first_10": counts[:10]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--identical", type=int, default=1_000_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--phases", default="limited,unlimited,multicast",
                        help="comma-separated subset of limited, unlimited, multicast (for iterating)")
    args = parser.parse_args()
    phases = set(args.phases.split(","))
    env = line_env(LINE_SEND_THREADS=str(args.threads), LINE_SEND_BATCH_SIZE="1000")
    prepare(env)
    link_users(env, "u-", max(args.messages, args.identical if "multicast" in phases else 0))
    results = {}
    with Sandbox(env) as sandbox:
        env["LINE_API_BASE"] = sandbox.url
        sandbox.control("limits", {"push": [1000, 1.0]})  # so a burst over the limit shows up as 429s
        if "limited" in phases:
            limited = dict(env, LINE_PUSH_RATE_PER_SECOND="1000")
            results["push_limit_1000"] = phase(sandbox, limited, count=args.messages, personal=True,
                                               processes=args.processes, dispatch="limited")
            r = results["push_limit_1000"]
            r["share_of_limit"] = round(r["achieved_requests_per_second"] / 1000, 3)
            r["rate_safety"] = float(limited.get("LINE_RATE_SAFETY", 0.97))
            r["target"] = ">= 0.95 of 1,000/s, max window <= 1,000, zero 429"
        if "unlimited" in phases:
            sandbox.control("limits", {"push": None})
            unlimited = dict(env, LINE_PUSH_RATE_PER_SECOND="0")
            results["push_unlimited"] = phase(sandbox, unlimited, count=args.messages, personal=True,
                                              processes=args.processes, dispatch="unlimited")
        if "multicast" in phases:
            sandbox.control("limits", {"push": [2000, 1.0]})
            multicast = dict(env, LINE_SEND_BATCH_SIZE="5000")
            results["multicast_identical"] = phase(sandbox, multicast, count=args.identical, personal=False,
                                                   processes=args.processes, dispatch="identical")
    results["command"] = ("flock /tmp/mops-bench.lock .venv/bin/python -m bench.line_delivery "
                          f"--messages {args.messages} --identical {args.identical} --processes {args.processes} "
                          f"--threads {args.threads}" + ("" if phases == {"limited", "unlimited", "multicast"}
                                                         else f" --phases {args.phases}"))
    report("LINE: delivery through the sandbox", results)


if __name__ == "__main__":
    main()
