"""Additive monthly totals vs store-everything (issue: Loyalty).

Time to compute one customer's stage (window totals + rule evaluation) from our monthly totals
(`loyalty.selectors.window_metrics`, the code the handler and API run) versus from aggregating
raw per-event rows (the design the source team rejected), for customers with 100, 10,000 and
100,000 events of history (2013 to now), in one run on PostgreSQL.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.loyalty_additive \
        [--n100 1000] [--n10k 1000] [--n100k 10] [--lookups 300]

The raw table `bench_raw_activity` exists only in the bench database, created by this script
(UNLOGGED, to load faster; reads are unaffected). Both sides hold exactly the same data: the totals
are aggregated from the raw rows, and the script checks that both give the same answer.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_loyalty, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

import argparse
import random
import statistics
import time

from bench.harness import django_in_process, machine, report

DATABASE = "mops_bench_loyalty"


def load(cursor, groups: dict[int, int]) -> dict[int, list[int]]:
    cursor.execute("DROP TABLE IF EXISTS bench_raw_activity")
    cursor.execute("TRUNCATE loyalty_stagechange, loyalty_stagepin, loyalty_monthlytotal, loyalty_customer")
    cursor.execute("CREATE UNLOGGED TABLE bench_raw_activity (customer_id bigint NOT NULL, kind varchar(4) NOT NULL, "
                   "amount bigint NOT NULL, occurred_at timestamptz NOT NULL)")
    cursor.execute("SELECT setseed(0.42)")
    pks: dict[int, list[int]] = {}
    for size, customers in groups.items():
        cursor.execute(
            "INSERT INTO loyalty_customer (customer_id, stage, rules_stage, created_at) "
            "SELECT 'bench-add-' || %s || '-' || g, 10, 10, now() FROM generate_series(1, %s) g RETURNING id",
            [size, customers])
        pks[size] = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            "INSERT INTO bench_raw_activity (customer_id, kind, amount, occurred_at) "
            "SELECT c, (ARRAY['buy','sell','pay'])[1 + (e %% 3)], "
            "CASE WHEN random() < 0.03 THEN -1 ELSE 1 END * (100 + floor(random() * 30000))::bigint, "
            "timestamptz '2013-07-01' + random() * (now() - interval '1 day' - timestamptz '2013-07-01') "
            "FROM unnest(%s::bigint[]) c, generate_series(1, %s) e",
            [pks[size], size])
    cursor.execute("CREATE INDEX bench_raw_customer_time ON bench_raw_activity (customer_id, occurred_at)")
    cursor.execute(
        "INSERT INTO loyalty_monthlytotal (customer_id, kind, month, amount, \"count\") "
        "SELECT customer_id, kind, date_trunc('month', occurred_at AT TIME ZONE 'UTC')::date, SUM(amount), "
        "SUM(CASE WHEN amount >= 0 THEN 1 ELSE -1 END) FROM bench_raw_activity GROUP BY 1, 2, 3")
    cursor.execute("ANALYZE bench_raw_activity")
    cursor.execute("ANALYZE loyalty_monthlytotal")
    cursor.execute("ANALYZE loyalty_customer")
    return pks


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n100", type=int, default=1000, help="customers with 100 events each")
    parser.add_argument("--n10k", type=int, default=1000, help="customers with 10,000 events each")
    parser.add_argument("--n100k", type=int, default=10, help="customers with 100,000 events each")
    parser.add_argument("--lookups", type=int, default=300, help="timed lookups per size and method")
    args = parser.parse_args()
    django_in_process(DATABASE)  # the bench database, created and migrated; the settings gunicorn would get
    import django

    django.setup()
    from datetime import UTC, datetime

    from django.db import connection, transaction

    from loyalty.demo import DEMO_RULES
    from loyalty.rules import metrics_add, metrics_empty, ruleset_build, stage_evaluate, window_start
    from loyalty.selectors import window_metrics

    ruleset = ruleset_build(1, DEMO_RULES)
    now = datetime.now(UTC)
    start = window_start(now, ruleset.window_months)
    groups = {100: args.n100, 10_000: args.n10k, 100_000: args.n100k}
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        pks = load(cursor, groups)
    load_seconds = time.perf_counter() - started

    def ours(pk: int) -> int:
        return stage_evaluate(ruleset, window_metrics(customer_pks=[pk], start=start)[pk]).stage

    def raw(pk: int) -> int:
        metrics = metrics_empty()
        with connection.cursor() as cursor:
            cursor.execute("SELECT kind, SUM(amount), SUM(CASE WHEN amount >= 0 THEN 1 ELSE -1 END) "
                           "FROM bench_raw_activity WHERE customer_id = %s AND occurred_at >= %s GROUP BY kind",
                           [pk, datetime(start.year, start.month, 1, tzinfo=UTC)])
            for kind, amount, count in cursor.fetchall():
                metrics_add(metrics, kind, int(amount), int(count))
        return stage_evaluate(ruleset, metrics).stage

    rng = random.Random(3)
    results = {}
    for size, customer_pks in pks.items():
        sample = [rng.choice(customer_pks) for _ in range(args.lookups)]
        for pk in sample[:20]:
            assert ours(pk) == raw(pk), f"customer {pk}: totals and raw rows disagree"
        timings = {}
        for name, fn in (("additive_totals", ours), ("raw_events", raw)):
            per_call = []
            for pk in sample:
                t0 = time.perf_counter()
                fn(pk)
                per_call.append((time.perf_counter() - t0) * 1000)
            timings[name] = {"median_ms": round(statistics.median(per_call), 3),
                             "p99_ms": round(sorted(per_call)[int(len(per_call) * 0.99) - 1], 3)}
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM loyalty_monthlytotal WHERE customer_id = %s", [customer_pks[0]])
            total_rows = cursor.fetchone()[0]
        results[f"{size}_events_per_customer"] = {
            "customers": len(customer_pks), **timings, "monthly_total_rows_per_customer": total_rows,
            "raw_over_additive": round(timings["raw_events"]["median_ms"] / timings["additive_totals"]["median_ms"], 1),
        }
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM bench_raw_activity")
        raw_rows = cursor.fetchone()[0]
        cursor.execute("SELECT pg_total_relation_size('bench_raw_activity'), "
                       "pg_total_relation_size('loyalty_monthlytotal')")
        raw_bytes, totals_bytes = cursor.fetchone()
    report("Loyalty: stage from additive monthly totals vs from raw events", {
        **results,
        "raw_rows": raw_rows, "raw_table_mb": round(raw_bytes / 2**20), "totals_table_mb": round(totals_bytes / 2**20),
        "load_seconds": round(load_seconds, 1), "lookups_per_size": args.lookups,
        "command": "flock /tmp/mops-bench.lock .venv/bin/python -m bench.loyalty_additive "
                   f"--n100 {args.n100} --n10k {args.n10k} --n100k {args.n100k} --lookups {args.lookups}",
    })
    print(machine())


if __name__ == "__main__":
    main()
