"""/metrics scrape time at demo scale and with a million rows in the big tables (issue 20, target < 100 ms).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.metrics_scrape [--rows 1000000] [--repeat 30]

1. Demo scale: `seed_demo` in the bench database mops_bench_metrics, then the scrape measured.
2. Big tables: --rows rows each in inbox events, outbound LINE messages, payment entries, bills and points
   grants (bulk INSERT ... SELECT generate_series, copying one ORM-made row per table, 0.1% of them in the
   states the gauges count: waiting/retry/dead events, queued messages, pending bills and grants), ANALYZE
   (as autovacuum would), the scrape measured again, and each scrape query's plan (EXPLAIN ANALYZE) shown
   with its time, so an index scan (or its absence) is visible.

What is measured is the scrape's own work in-process: `snapshot()` (every scrape gauge: the queries,
Redis' LLENs) and `exposition()` (that plus the multiprocess counters' files, rendered as text), median and
max over --repeat runs, and per area (mercari_ops_metrics_collector_duration_seconds). HTTP adds the same
few hundred microseconds as any other request. The loaded rows stay in the bench database between runs.
"""

from __future__ import annotations

import argparse
import statistics
import time

from bench.harness import django_in_process, manage, report

DATABASE = "mops_bench_metrics"
MARK = "bm-"  # every generated key starts with it: the load is counted and never repeated


def _load_like(model, template, overrides: dict[str, str], rows: int) -> int:
    """INSERT `rows` copies of `template` (an ORM-made row) with `overrides` (SQL expressions of g, the
    series number) for some columns; returns the rows added (0 when a previous run loaded them)."""
    from django.db import connection
    from psycopg import sql

    table = model._meta.db_table
    key = next(iter(overrides))
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} LIKE %s").format(
            sql.Identifier(table), sql.Identifier(key)), [MARK + "%"])
        have = cursor.fetchone()[0]
        if have >= rows:
            return 0
        columns = [f.column for f in model._meta.concrete_fields if not f.primary_key]
        values = [sql.SQL(overrides[c]) if c in overrides else sql.Identifier(c) for c in columns]
        cursor.execute(sql.SQL("INSERT INTO {table} ({columns}) SELECT {values} FROM {table} t, "
                               "generate_series(%s::bigint, %s::bigint) AS g WHERE t.id = %s").format(
            table=sql.Identifier(table), columns=sql.SQL(", ").join(map(sql.Identifier, columns)),
            values=sql.SQL(", ").join(values)), [have + 1, rows, template.pk])
        return cursor.rowcount


def _state(every: int, rare: list[str], common: str) -> str:
    """A SQL CASE giving each of `rare` to one row in `every`, `common` to the others."""
    cases = " ".join(f"WHEN mod(g, {every}) = {n} THEN '{state}'" for n, state in enumerate(rare))
    return f"CASE {cases} ELSE '{common}' END"


def load(rows: int) -> dict:
    from django.db import connection, transaction
    from django.utils import timezone

    from campaigns.models import Bill, PointsGrant
    from history.models import PaymentEntry
    from line_integration.models import OutboundMessage
    from mercari_ops.inbox.models import InboxEvent

    now = timezone.now()
    with transaction.atomic():
        event = InboxEvent.objects.get_or_create(topic="platform-ping", event_id="bm-template", defaults={
            "status": "processed"})[0]
        message = OutboundMessage.objects.get_or_create(dispatch_id="bm-template", user_id="bm-template", defaults={
            "status": "sent", "created_at": now, "line_user_id": "U" + "0" * 32})[0]
        entry = PaymentEntry.objects.get_or_create(payment_id="bm-template", defaults={
            "customer_id": "c-bm", "type": "mercari.purchase", "amount": 3000, "state": "completed",
            "state_at": now, "occurred_at": now, "event_id": "bm-template"})[0]
        bill = Bill.objects.get_or_create(bill_id="bm-template", defaults={
            "customer_id": "c-bm", "billing_month": "2026-10", "settled_at": now, "status": "settled"})[0]
        grant = PointsGrant.objects.get_or_create(idempotency_key="bm-template", defaults={
            "bill": bill, "customer_id": "c-bm", "points": 30, "status": "sent"})[0]
    started = time.perf_counter()
    added = {
        "inbox events": _load_like(InboxEvent, event, {
            "event_id": "'bm-' || g", "status": _state(1000, ["waiting", "retry", "dead"], "processed"),
            "received_at": "now() - g * interval '1 second'"}, rows),
        "outbound messages": _load_like(OutboundMessage, message, {
            "dispatch_id": "'bm-' || g", "user_id": "'c-' || g", "status": _state(1000, ["queued"], "sent"),
            "created_at": "now() - g * interval '1 second'"}, rows),
        "payment entries": _load_like(PaymentEntry, entry, {
            "payment_id": "'bm-' || g", "customer_id": "'c-' || mod(g, 100000)", "event_id": "'bm-' || g",
            "occurred_at": "now() - g * interval '1 minute'"}, rows),
        "bills": _load_like(Bill, bill, {
            "bill_id": "'bm-' || g", "status": _state(1000, ["pending", "dead"], "settled"),
            "received_at": "now() - g * interval '1 second'"}, rows),
        "points grants": _load_like(PointsGrant, grant, {
            "idempotency_key": "'bm-' || g", "status": _state(1000, ["pending", "rejected"], "sent"),
            "next_attempt_at": "now() - g * interval '1 second'"}, rows),
    }
    load_seconds = time.perf_counter() - started
    with connection.cursor() as cursor:
        for model in (InboxEvent, OutboundMessage, PaymentEntry, Bill, PointsGrant):
            cursor.execute(f'ANALYZE "{model._meta.db_table}"')
    return {"rows_per_table": rows, "added": added, "load_seconds": round(load_seconds, 1)}


def measure(repeat: int) -> dict:
    from mercari_ops.common.metrics import snapshot
    from mercari_ops.common.metrics.registry import exposition

    snapshot()  # first: connections, prepared statements, imports
    snapshots, expositions, cpu = [], [], []
    for _ in range(repeat):
        started = time.perf_counter()
        values = snapshot()
        snapshots.append(time.perf_counter() - started)
        started, started_cpu = time.perf_counter(), time.process_time()
        size = len(exposition())
        expositions.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    areas = values["mercari_ops_metrics_collector_duration_seconds"]
    return {
        "snapshot_ms": {"median": round(statistics.median(snapshots) * 1000, 2),
                        "max": round(max(snapshots) * 1000, 2)},
        "exposition_ms": {"median": round(statistics.median(expositions) * 1000, 2),
                          "max": round(max(expositions) * 1000, 2)},
        # this process's CPU per scrape: what remains of the wall time is waiting (PostgreSQL, Redis, the CPU)
        "exposition_cpu_ms": {"median": round(statistics.median(cpu) * 1000, 2)},
        "exposition_bytes": size,
        "last_snapshot_per_area_ms": {area[0]: round(seconds * 1000, 2) for area, seconds in sorted(areas.items())},
        "collectors_up": {area[0]: up for area, up in
                          values["mercari_ops_metrics_collector_up"].items()},
    }


def plans() -> list[dict]:
    """Each query of one scrape with its EXPLAIN ANALYZE: the plan's first line and its time."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from mercari_ops.common.metrics import snapshot

    with CaptureQueriesContext(connection) as captured:
        snapshot()
    shown = []
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql_text = query["sql"]
            if not sql_text.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql_text)
            lines = [row[0] for row in cursor.fetchall()]
            scans = sorted({line.strip().removeprefix("-> ").split("  (")[0] for line in lines if "Scan" in line})
            shown.append({"sql": sql_text[:160], "scans": scans,
                          "execution": next((line for line in lines if line.startswith("Execution Time")), "")})
    return shown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--skip-demo", action="store_true", help="only the big tables")
    args = parser.parse_args()
    env = django_in_process(DATABASE)
    import django

    django.setup()
    results: dict = {}
    if not args.skip_demo:
        manage("seed_demo", env=env)
        results["demo"] = measure(args.repeat)
    results["load"] = load(args.rows)
    results[f"{args.rows:,} rows"] = measure(args.repeat)
    results["plans"] = plans()
    results["plans_execution_ms_total"] = round(sum(
        float(plan["execution"].split(":")[1].split()[0]) for plan in results["plans"] if plan["execution"]), 2)
    report("/metrics scrape time (issue 20)", results)


if __name__ == "__main__":
    main()
