"""Grant delivery against a partly failing points service (issue 16): each grant once, attempts only on grants
the service refused, and a quick resume after an outage.

    flock /tmp/mops-bench.lock .venv/bin/python -m bench.campaigns_grants [--grants 2864] [--fail-percent 5]
        [--outage-seconds 60] [--sweep-seconds 10] [--scenarios partial,outage]

Two scenarios on the bench database mops_bench_grants, each with --grants pending grants (one bill each)
written straight into it, against a local points service over HTTP (the tests' PointsServer, a real
ThreadingHTTPServer, in this process; grants are idempotent by key there as in the points team's API),
called by the real client. `campaigns.settle_grants_sweep` runs every --sweep-seconds as beat runs it
(the task itself, its named lock included, in this process), in real time:

  partial: the service answers 503 to --fail-percent of the requests (a seeded pattern). Reported: the
      time until every grant is delivered (target: 2 minutes), each once, and the attempts charged next
      to the refusals (an attempt only on a grant the service refused).
  outage: every grant falls due while the service is down for --outage-seconds (503 to everything),
      then it answers again. Reported: the requests made during the outage, the attempts charged for it
      (target 0), and the time from recovery to the first and to the last delivery (target: resume
      within a minute), each grant once.

Runs on the embedded PostgreSQL and Redis under var/bench, started and stopped by the bench (database
mops_bench_grants); BENCH_DATABASE_URL (and BENCH_REDIS_URL) override them (see bench.harness).
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

from bench.harness import django_in_process, report

TABLES = ["campaigns_customernotification", "campaigns_pointsledgerentry", "campaigns_campaignreward",
          "campaigns_pointsgrant", "campaigns_billline", "campaigns_bill", "campaigns_pointsservicebreaker"]


def seed(count: int) -> list[str]:
    """`count` pending grants of 30 points, due now, one bill each; returns their idempotency keys."""
    from django.db import connection
    from django.utils import timezone

    from campaigns.models import Bill, PointsGrant

    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    settled_at = datetime(2026, 11, 27, 3, tzinfo=UTC)
    bills = Bill.objects.bulk_create([
        Bill(bill_id=f"b-2026-10-g{n:05d}", customer_id=f"g{n:05d}", billing_month="2026-10", settled_at=settled_at,
             status=Bill.Status.SETTLED, line_count=1, processed_at=settled_at) for n in range(count)
    ], batch_size=2000)
    now = timezone.now()
    grants = PointsGrant.objects.bulk_create([
        PointsGrant(bill=bill, customer_id=bill.customer_id, points=30, idempotency_key=f"mops-bill-{bill.bill_id}-1",
                    next_attempt_at=now, created_at=now) for bill in bills
    ], batch_size=2000)
    return [grant.idempotency_key for grant in grants]


def _pending() -> int:
    from campaigns.models import PointsGrant

    return PointsGrant.objects.filter(status=PointsGrant.Status.PENDING).count()


def _sweep_every(seconds: float, *, until, limit: float) -> float | None:
    """Run the grants sweep task every `seconds` until `until()` holds or `limit` seconds passed; elapsed time
    at the end of the sweep after which `until()` held (None: limit reached)."""
    from campaigns.tasks import settle_grants_sweep

    start = time.monotonic()
    while True:
        tick = time.monotonic()
        settle_grants_sweep()
        if until():
            return round(time.monotonic() - start, 1)
        if time.monotonic() - start > limit:
            return None
        time.sleep(max(0.0, seconds - (time.monotonic() - tick)))


def _exactly_once(server, keys: list[str]) -> dict:
    granted = sorted(server.granted)
    return {"granted_keys": len(granted), "each_once": granted == sorted(keys),
            "points_total": sum(body["points"] for body in server.granted.values())}


def partial(args) -> dict:
    from django.conf import settings

    from campaigns.models import PointsGrant, PointsServiceBreaker
    from campaigns.tests.points_server import PointsServer

    keys = seed(args.grants)
    with PointsServer(fail_percent=args.fail_percent, seed=args.seed) as server:
        settings.POINTS_API_URL = server.url
        took = _sweep_every(args.sweep_seconds, until=lambda: _pending() == 0, limit=300)
    attempts = dict(PointsGrant.objects.values_list("idempotency_key", "attempts"))
    refusals = sum(server.refused.values())
    unearned = sum(1 for key in keys if attempts[key] > server.refused[key] + 1
                   or (not server.refused[key] and attempts[key] != 1))
    breaker = PointsServiceBreaker.objects.filter(name="points").first()
    return {
        "grants": args.grants, "fail_percent": args.fail_percent, "requests": len(server.requests),
        "refusals_503": refusals, "grants_refused_at_least_once": sum(1 for v in server.refused.values() if v),
        "attempts_charged_for_refusals": sum(attempts.values()) - args.grants,
        "grants_with_an_attempt_not_earned": unearned,
        "seconds_until_all_delivered": took, "target_seconds": 120, "pending_left": _pending(),
        "breaker_openings": breaker.openings if breaker else 0, **_exactly_once(server, keys),
        "target_met": took is not None and took <= 120 and unearned == 0 and _pending() == 0,
    }


def outage(args) -> dict:
    """Sweeps at beat's interval throughout; the service comes back at --outage-seconds, between two sweeps
    as it would (a timer, not a sweep, switches it)."""
    import threading

    from django.conf import settings

    from campaigns.models import PointsGrant
    from campaigns.tasks import settle_grants_sweep
    from campaigns.tests.points_server import PointsServer

    keys = seed(args.grants)
    marks: dict[str, float] = {}
    with PointsServer() as server:
        settings.POINTS_API_URL = server.url
        server.mode = "down"

        def recover():
            marks["requests_during_outage"] = len(server.requests)
            marks["charged_during_outage"] = sum(PointsGrant.objects.values_list("attempts", flat=True))
            server.mode = "ok"
            marks["recovered"] = time.monotonic()

        start = time.monotonic()
        timer = threading.Timer(args.outage_seconds, recover)
        timer.start()
        while time.monotonic() - start < args.outage_seconds + 300:
            tick = time.monotonic()
            settle_grants_sweep()
            if "recovered" in marks:
                if server.granted and "first" not in marks:
                    marks["first"] = time.monotonic() - marks["recovered"]
                if _pending() == 0:
                    marks["all"] = time.monotonic() - marks["recovered"]
                    break
            time.sleep(max(0.0, args.sweep_seconds - (time.monotonic() - tick)))
        timer.cancel()
    attempts = set(PointsGrant.objects.values_list("attempts", flat=True))
    first = round(marks["first"], 1) if "first" in marks else None
    charged = marks.get("charged_during_outage")
    return {
        "grants": args.grants, "outage_seconds": args.outage_seconds, "sweep_seconds": args.sweep_seconds,
        "requests_during_outage": marks.get("requests_during_outage"), "attempts_charged_for_the_outage": charged,
        "seconds_from_recovery_to_first_delivery": first,
        "seconds_from_recovery_to_all_delivered": round(marks["all"], 1) if "all" in marks else None,
        "target_seconds": 60, "attempts_after_delivery": sorted(attempts), "pending_left": _pending(),
        **_exactly_once(server, keys),
        "target_met": first is not None and first <= 60 and charged == 0 and _pending() == 0 and attempts == {1},
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--grants", type=int, default=2864)
    parser.add_argument("--fail-percent", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--outage-seconds", type=float, default=60.0)
    parser.add_argument("--sweep-seconds", type=float, default=10.0, help="campaigns.settle_grants_sweep interval")
    parser.add_argument("--scenarios", default="partial,outage")
    args = parser.parse_args()
    django_in_process("mops_bench_grants")
    import django

    django.setup()
    results = {}
    scenarios = args.scenarios.split(",")
    if "partial" in scenarios:
        results["partial"] = partial(args)
    if "outage" in scenarios:
        results["outage"] = outage(args)
    command = (f"flock /tmp/mops-bench.lock .venv/bin/python -m bench.campaigns_grants --grants {args.grants} "
               f"--fail-percent {args.fail_percent} --outage-seconds {args.outage_seconds}")
    report("Campaigns: grant delivery with a partly failing points service", {**results, "command": command})


if __name__ == "__main__":
    main()
