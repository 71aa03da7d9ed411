"""Settlement throughput: N bill lines for N/10 customers, 2 active campaigns, on PostgreSQL (issue: Campaigns).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.campaigns_settle [--lines 1000000] [--customers 100000]
        [--batch 500]

Loads the bench database directly (COPY) with loyalty customers, card statuses, a merchant master, the
two source-design campaigns (one capped) and one bill per customer for 2026-10, then times
`manage.py settle --month 2026-10` end to end (rewards, caps, grants, ledger, notifications) in a
separate process, exactly as an operator would run it. Also reports what PostgreSQL did meanwhile: the
bench database's buffer hit ratio (is shared_buffers the bound?), WAL and checkpoints, and the settings.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_campaigns, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
"""

from __future__ import annotations

import argparse
import io
import json
import random
import subprocess
import sys
import time

from bench.harness import ROOT, VENV_BIN, bench_env, database_create, report

TABLES = ["campaigns_customernotification", "campaigns_pointsledgerentry", "campaigns_campaignreward",
          "campaigns_pointsgrant", "campaigns_campaignbudget", "campaigns_billline", "campaigns_bill",
          "campaigns_cardstatus", "campaigns_campaignversion", "campaigns_campaignstagerate",
          "campaigns_campaignbacktest", "campaigns_provisiondaily", "campaigns_provisionjournal",
          "campaigns_campaign", "campaigns_merchantalias", "campaigns_merchantmaster", "campaigns_cataloggeneration"]


def _copy(conn, table: str, columns: list[str], rows) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def seed(env: dict, *, customers: int, lines: int) -> None:
    import psycopg

    url = env["DATABASE_URL"]
    rng = random.Random(7)
    per_bill = max(1, lines // customers)
    with psycopg.connect(url, autocommit=False) as conn:
        conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
        conn.execute("TRUNCATE loyalty_customer RESTART IDENTITY CASCADE")
        ids = [f"c-{n:06d}" for n in range(customers)]
        _copy(conn, "loyalty_customer", ["customer_id", "stage", "rules_stage", "created_at"],
              ((c, s, s, "2026-01-01T00:00:00Z") for c, s in ((c, rng.choice([10, 20, 30, 40])) for c in ids)))
        _copy(conn, "campaigns_cardstatus", ["customer_id", "mercard_status", "changed_at", "event_id"],
              ((c, rng.choice([2, 3, 3, 3, 1]), "2026-09-01T00:00:00Z", "") for c in ids))
        conn.commit()
    # Campaigns and the merchant master through the real services (validation, versions, generation).
    code = (
        "from datetime import datetime, UTC\n"
        "from campaigns.services import campaign_create, merchant_master_import_csv\n"
        "rows = ['merchant_id,payment_method,master_id,is_marketplace,category', 'm-mercari,,mercari,1,',"
        " 'm-mercari-ap,apple_pay,mercari,,', 'm-charge,,charge,0,e_money_charge']\n"
        "rows += [f'm-s{n},,shop-{n},0,' for n in range(500)]\n"
        "merchant_master_import_csv(text='\\n'.join(rows) + '\\n')\n"
        "s, e = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)\n"
        "campaign_create(name='Marketplace', starts_at=s, ends_at=e, status='active', "
        "rates=[(10, 19, '1.0'), (20, 29, '2.0'), (30, 39, '3.0'), (40, 49, '4.0')], "
        "user_filters={'mercard_status': [2, 3]}, payment_filters={'mercari_inner_payment': True})\n"
        "campaign_create(name='Outside', starts_at=s, ends_at=e, status='active', rates=[(10, 49, '0.5')], "
        "user_filters={'mercard_status': [2, 3]}, upper_limit=300, payment_filters={'mercari_outer_payment': True, "
        "'merchant': {'shop_id': ['shop-1', 'shop-2'], 'invert': True}, 'excluded_categories': ['e_money_charge']})\n"
    )
    subprocess.run([str(VENV_BIN / "python"), "manage.py", "shell", "-c", code], cwd=ROOT, env=env, check=True)
    merchants = [("m-mercari", "mercard", "mercari")] * 5 + [("m-mercari-ap", "apple_pay", "outside"),
                                                             ("m-charge", "e_money_charge", "outside"),
                                                             ("m-nobody", "mercard", "outside")]
    merchants += [(f"m-s{n}", "mercard", "outside") for n in range(0, 500, 50)]
    with psycopg.connect(url, autocommit=False) as conn:
        _copy(conn, "campaigns_bill", ["bill_id", "customer_id", "billing_month", "settled_at", "event_id", "status",
                                       "line_count", "received_at", "unmatched_lines"],
              ((f"b-2026-10-{c}", c, "2026-10", "2026-11-27T03:00:00Z", "", "pending", per_bill,
                "2026-11-27T03:00:00Z", 0) for c in ids))
        buffer = io.StringIO()
        for pk, customer in enumerate(ids, start=1):
            for k in range(per_bill):
                merchant_id, method, channel = merchants[rng.randrange(len(merchants))]
                buffer.write(f"{pk}\tp-{customer}-{k}\t{customer}\t{rng.randint(3, 300) * 100}\t{merchant_id}\t"
                             f"{method}\t{channel}\t2026-10-{rng.randint(1, 28):02d}T12:00:00Z\n")
        with conn.cursor() as cur, cur.copy("COPY campaigns_billline (bill_id, payment_id, customer_id, amount, "
                                            "merchant_id, payment_method, channel, paid_at) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        conn.commit()
        conn.execute("ANALYZE")


def postgres_counters(url: str) -> dict:
    """Buffer reads/hits of the bench database and the server's WAL counters (cluster-wide), for deltas."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        read, hit, temp = conn.execute("SELECT blks_read, blks_hit, temp_bytes FROM pg_stat_database "
                                       "WHERE datname = current_database()").fetchone()
        wal_bytes, fpi = conn.execute("SELECT wal_bytes, wal_fpi FROM pg_stat_wal").fetchone()
        # PostgreSQL 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer
        checkpoints = conn.execute(
            "SELECT num_timed + num_requested FROM pg_stat_checkpointer" if conn.info.server_version >= 170000
            else "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter").fetchone()[0]
        settings = dict(conn.execute("SELECT name, current_setting(name) FROM pg_settings WHERE name IN "
                                     "('shared_buffers', 'autovacuum', 'max_wal_size', 'synchronous_commit')"))
    return {"read": read, "hit": hit, "temp": temp, "wal": int(wal_bytes), "fpi": fpi, "checkpoints": checkpoints,
            "settings": settings}


def postgres_report(before: dict, after: dict) -> dict:
    read, hit = after["read"] - before["read"], after["hit"] - before["hit"]
    return {
        "buffer_hit_ratio": round(hit / max(read + hit, 1), 4), "blocks_read": read, "blocks_hit": hit,
        "temp_mb": round((after["temp"] - before["temp"]) / 1e6, 1),
        "wal_mb_cluster_wide": round((after["wal"] - before["wal"]) / 1e6),
        "wal_full_page_images": after["fpi"] - before["fpi"],
        "checkpoints": after["checkpoints"] - before["checkpoints"],
        "settings": after["settings"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    env = bench_env("mops_bench_campaigns")
    url = env["DATABASE_URL"]
    database_create(env)
    started = time.perf_counter()
    seed(env, customers=args.customers, lines=args.lines)
    seed_seconds = time.perf_counter() - started
    counters = postgres_counters(url)
    started = time.perf_counter()
    out = subprocess.run([str(VENV_BIN / "python"), "manage.py", "settle", "--month", "2026-10", "--json",
                          "--no-progress", "--batch", str(args.batch)], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    wall = time.perf_counter() - started
    postgres = postgres_report(counters, postgres_counters(url))
    data = json.loads(out[out.index("{"):])
    lines_per_second = round(data["lines"] / wall)
    report("Campaigns: settlement (manage.py settle, end to end)", {
        "lines": data["lines"], "bills": data["bills"], "customers": args.customers,
        "rewards": sum(c["rewards"] for c in data["campaigns"].values()),
        "capped_rewards": sum(c["capped"] for c in data["campaigns"].values()),
        "lines_unknown_merchant": data["lines_unknown_merchant"], "grants": data["grants"],
        "delivered": data["delivered"], "settle_phase_seconds": data["settle_seconds"],
        "wall_seconds_including_process_start": round(wall, 1),
        "lines_per_second": lines_per_second, "target_lines_per_second": 5000,
        "target_met": lines_per_second >= 5000, "seed_seconds": round(seed_seconds, 1), "postgres": postgres,
        "command": f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.campaigns_settle --lines {args.lines} "
                   f"--customers {args.customers}" + (f" --batch {args.batch}" if args.batch != 500 else ""),
    })
    sys.stdout.flush()


if __name__ == "__main__":
    main()
