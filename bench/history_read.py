"""History read API: one customer with 1,000,000 entries, first page vs a page 10,000 deep (issue 6).

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_read [--entries 1000000] [--duration 10]
        [--samples 2000] [--repeat 1] [--with-campaign]      # --entries 400000 at least

Bulk-loads the entries with INSERT ... SELECT generate_series (not the ORM), once: half of them
top-level marketplace purchases, each with the billed card transaction that paid for it as its
child. A page is 20 top-level entries (with their children, actions and estimates), so page
10,000 starts 199,980 entries deep. Measures the selector in-process, the whole Django side of the GET
in-process (CPU per request through the WSGI handler), and the HTTP API through gunicorn + wrk
(1 connection: latency, not throughput), all on PostgreSQL, and shows the plan of the deep query.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_history, Redis dbs 9 and 10); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see
bench.harness).
The entries stay loaded there between runs (var/bench/pg is kept), so only the first run pays the load.
"""

import argparse
import os
import statistics
import time

from bench.harness import Server, django_in_process, manage, report, wrk

CUSTOMER = "c-bench-1m"
PAGE = 20
DEEP_PAGE = 10_000

LOAD_ROOTS = """
INSERT INTO history_paymententry (payment_id, customer_id, type, parent_id, root_id, amount, state, state_at,
    occurred_at, title, attributes, event_id, created_at, updated_at)
SELECT 'bp-' || g, %(customer)s, 'mercari.purchase', NULL, NULL, 300 + g %% 9700, 'completed', t, t,
       'item ' || g, jsonb_build_object('item_name', 'item ' || g), 'be-p-' || g, now(), now()
FROM generate_series(1, %(roots)s) AS g,
     LATERAL (SELECT timestamptz '2013-07-01 00:00:00+00' + g * interval '5 minutes' AS t) AS x
"""
LOAD_CHILDREN = """
INSERT INTO history_paymententry (payment_id, customer_id, type, parent_id, root_id, amount, state, state_at,
    occurred_at, title, attributes, event_id, created_at, updated_at)
SELECT 'bt-' || substr(p.payment_id, 4), p.customer_id, 'mercard.transaction', p.id, p.id, p.amount,
       CASE WHEN p.id %% 3 = 0 THEN 'repaid' ELSE 'billed' END, p.occurred_at + interval '10 days',
       p.occurred_at + interval '1 second', 'Mercari',
       '{"merchant_name": "Mercari", "merchant_id": "m-mercari", "payment_method": "mercard"}'::jsonb,
       'be-t-' || substr(p.payment_id, 4), now(), now()
FROM history_paymententry p WHERE p.customer_id = %(customer)s AND p.parent_id IS NULL
"""


def load(entries: int) -> dict:
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM history_paymententry WHERE customer_id = %s", [CUSTOMER])
        have = cursor.fetchone()[0]
        if have == entries:
            return {"loaded": False, "entries": have}
        started = time.perf_counter()
        cursor.execute("DELETE FROM history_paymententry WHERE customer_id = %s AND parent_id IS NOT NULL",
                       [CUSTOMER])
        cursor.execute("DELETE FROM history_paymententry WHERE customer_id = %s", [CUSTOMER])
        cursor.execute(LOAD_ROOTS, {"customer": CUSTOMER, "roots": entries // 2})
        cursor.execute(LOAD_CHILDREN, {"customer": CUSTOMER})
        cursor.execute("ANALYZE history_paymententry")
        return {"loaded": True, "entries": entries, "load_seconds": round(time.perf_counter() - started, 1)}


def campaign_ensure() -> dict:
    """An active campaign for the bench customer (a loyalty stage, one rate, the merchant in the master), so
    every estimate on a page runs the rule evaluation and the customer-facts query instead of answering
    no_active_campaign."""
    from datetime import timedelta

    from django.db import transaction
    from django.utils import timezone

    from campaigns.models import Campaign
    from campaigns.services import campaign_create, merchant_master_import_csv
    from loyalty.models import Customer

    with transaction.atomic():
        Customer.objects.get_or_create(customer_id=CUSTOMER, defaults={"stage": 10, "rules_stage": 10})
        merchant_master_import_csv(text="merchant_id,payment_method,master_id,master_name,is_marketplace\n"
                                        "m-mercari,,mercari,Mercari,1\n")
        campaign = Campaign.objects.filter(name="bench-history", status=Campaign.Status.ACTIVE).first()
        if campaign is None:
            now = timezone.now()
            campaign = campaign_create(name="bench-history", starts_at=now - timedelta(days=1),
                                       ends_at=now + timedelta(days=3650), rates=[(1, 100, "1.5")],
                                       status=Campaign.Status.ACTIVE)
    return {"campaign_id": campaign.pk, "customer_stage": 10}


def campaign_remove() -> None:
    from django.db import transaction

    from campaigns.models import Campaign
    from campaigns.services import campaign_end

    with transaction.atomic():
        for pk in Campaign.objects.filter(name="bench-history", status=Campaign.Status.ACTIVE).values_list("pk",
                                                                                                         flat=True):
            campaign_end(campaign_id=pk)


def in_process(samples: int) -> dict:
    from django.db import connection

    from history.selectors import cursor_encode, history_page

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT occurred_at, id FROM history_paymententry WHERE customer_id = %s AND parent_id IS NULL "
            "ORDER BY occurred_at DESC, id DESC OFFSET %s LIMIT 1", [CUSTOMER, PAGE * (DEEP_PAGE - 1) - 1])
        deep_at, deep_id = cursor.fetchone()
    deep_cursor = cursor_encode(deep_at, deep_id)
    deep = history_page(customer_id=CUSTOMER, cursor=deep_cursor, page_size=PAGE)
    assert len(deep["entries"]) == PAGE and all(e["children"] for e in deep["entries"])
    estimates = [child["cashback"] for entry in deep["entries"] for child in entry["children"]]

    def timed(cursor):
        times = []
        for _ in range(samples):
            started = time.perf_counter()
            history_page(customer_id=CUSTOMER, cursor=cursor, page_size=PAGE)
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        return {"p50_ms": round(statistics.median(times), 3), "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
                "samples": samples}

    timed(None)  # warm
    result = {"first_page": timed(None), "page_10000": timed(deep_cursor),
              "estimate_example": estimates[0], "estimates_eligible": sum(e["eligible"] for e in estimates)}
    with connection.cursor() as cursor:
        cursor.execute(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT id FROM history_paymententry WHERE customer_id = %s AND "
            "parent_id IS NULL AND occurred_at <= %s AND (occurred_at < %s OR (occurred_at = %s AND id < %s)) "
            "ORDER BY occurred_at DESC, id DESC LIMIT 21", [CUSTOMER, deep_at, deep_at, deep_at, deep_id])
        result["deep_plan"] = [row[0] for row in cursor.fetchall()][:4]
    return result, deep_cursor


def wsgi_in_process(token: str, deep_cursor: str, calls: int = 500) -> dict:
    """CPU and wall time per GET through Django's WSGI handler in this process: the whole Django side
    (middleware, URL resolution, auth, view, rendering) without gunicorn, the socket or wrk, so it moves
    little with the machine's other load. Also checks that both pages answer 200."""
    import io

    from django.core.wsgi import get_wsgi_application

    app = get_wsgi_application()
    statuses = []

    def call(query: str) -> None:
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": f"/api/history/customers/{CUSTOMER}/payments",
                   "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "HTTP_HOST": "127.0.0.1",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "SERVER_PROTOCOL": "HTTP/1.1",
                   "HTTP_AUTHORIZATION": f"Token {token}"}
        b"".join(app(environ, lambda status, headers, exc_info=None: statuses.append(status)))

    result = {}
    for name, query in (("first_page", f"page_size={PAGE}"), ("page_10000", f"page_size={PAGE}&cursor={deep_cursor}")):
        for _ in range(50):
            call(query)
        cpu, wall = time.process_time(), time.perf_counter()
        for _ in range(calls):
            call(query)
        result[name] = {"cpu_ms_per_request": round((time.process_time() - cpu) * 1000 / calls, 3),
                        "wall_ms_per_request": round((time.perf_counter() - wall) * 1000 / calls, 3)}
    assert set(statuses) == {"200 OK"}, set(statuses)
    result["requests"] = calls
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1, help="HTTP runs per page (noise shows as spread)")
    parser.add_argument("--with-campaign", action="store_true",
                        help="an active campaign for the customer: estimates evaluated, not no_active_campaign")
    args = parser.parse_args()
    if args.entries < 2 * PAGE * DEEP_PAGE:  # half of them top-level: page 10,000 must be full
        parser.error(f"--entries must be at least {2 * PAGE * DEEP_PAGE} (page {DEEP_PAGE:,} of {PAGE} top-level "
                     "entries, each with its child)")
    load_before = os.getloadavg()
    env = django_in_process("mops_bench_history")
    loaded = load(args.entries)
    campaign = campaign_ensure() if args.with_campaign else campaign_remove()
    direct, deep_cursor = in_process(args.samples)
    token = manage("create_service_token", "bench-history", "--scopes", "history_read", env=env).stdout.strip()
    auth = {"Authorization": f"Token {token}"}
    django_side = wsgi_in_process(token, deep_cursor)
    url = f"/api/history/customers/{CUSTOMER}/payments?page_size={PAGE}"
    first, deep = [], []
    with Server(env=env, migrate=False) as server:
        wrk(server.url(url), headers=auth, duration=3, connections=1)  # warm-up
        for _ in range(args.repeat):  # interleaved, so a noisy moment hits both pages alike
            first.append(wrk(server.url(url), headers=auth, duration=args.duration, connections=1))
            deep.append(wrk(server.url(url + f"&cursor={deep_cursor}"), headers=auth, duration=args.duration,
                            connections=1))
    report("Payment history: read API, 1,000,000 entries for one customer", {
        "data": loaded, "page_size": PAGE, "campaign": campaign, "selector_in_process": direct,
        "django_wsgi_in_process": django_side,
        "http_first_page": first, "http_page_10000": deep,
        "load_average_before": [round(x, 2) for x in load_before],
        "command": f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.history_read --entries {args.entries} "
                   f"--duration {args.duration}" + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
                   + (" --with-campaign" if args.with_campaign else ""),
        "gunicorn": f"{server.workers} workers x {server.threads} threads",
    })


if __name__ == "__main__":
    main()
