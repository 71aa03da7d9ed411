import json
import re
import sys
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from campaigns.models import Bill
from campaigns.services import grants_deliver_all, month_settle


class Command(BaseCommand):
    help = (
        "Re-run the cashback settlement of a billing month from the stored bills. Idempotent: payments that "
        "already have a reward are skipped, so a re-run grants nothing twice. --dry-run writes nothing and "
        "prints what the run would give per campaign."
    )

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="billing month, YYYY-MM")
        parser.add_argument("--dry-run", action="store_true")
        parser.add_argument("--pending-only", action="store_true", help="only bills not settled yet")
        parser.add_argument("--batch", type=int, default=500, help="bills per transaction")
        parser.add_argument("--no-deliver", action="store_true", help="leave grant delivery to the workers")
        parser.add_argument("--no-progress", action="store_true")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")

    def handle(self, *args, month, dry_run, pending_only, batch, no_deliver, no_progress, json: bool, **options):
        if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", month):
            raise CommandError(f"--month must be YYYY-MM, got {month!r}")
        bills = Bill.objects.filter(billing_month=month)
        if pending_only:
            bills = bills.filter(status=Bill.Status.PENDING)
        total_bills = bills.count()
        started = time.perf_counter()
        with tqdm(total=total_bills, desc=f"settle {month}{' (dry run)' if dry_run else ''}", unit=" bills",
                  disable=no_progress, file=sys.stderr) as bar:
            report = month_settle(month=month, dry_run=dry_run, batch=batch, only_pending=pending_only,
                                  progress=lambda r: bar.update(r.bills + r.bills_skipped_locked))
        settle_seconds = time.perf_counter() - started
        delivered = None
        if not dry_run and not no_deliver:
            delivered = grants_deliver_all()
        seconds = time.perf_counter() - started
        data = report.as_dict()
        data.update(seconds=round(seconds, 2), settle_seconds=round(settle_seconds, 2),
                    lines_per_second=round(report.lines / seconds) if seconds else None, delivered=delivered,
                    dry_run=dry_run)
        if json:
            import json as json_module

            self.stdout.write(json_module.dumps(data, indent=2))
            return
        self.stdout.write(f"{'DRY RUN - nothing written. ' if dry_run else ''}month {month}: {report.bills} bills, "
                          f"{report.lines} lines in {seconds:.1f}s ({data['lines_per_second']} lines/s)")
        self.stdout.write(f"  rewarded lines {report.lines_rewarded}, no campaign {report.lines_no_campaign}, "
                          f"unknown merchant {report.lines_unknown_merchant}, "
                          f"unknown customer {report.lines_unknown_customer}, "
                          f"bills skipped (being settled elsewhere) {report.bills_skipped_locked}")
        for bill_id, reason in report.dead:  # issue 16: set aside, the rest settled; admin "Retry settlement"
            self.stdout.write(f"  bill {bill_id} set aside (cannot settle): {reason}")
        for campaign_id, totals in sorted(report.campaigns.items()):
            self.stdout.write(f"  campaign {campaign_id} {totals.name!r}: {totals.rewards} rewards, "
                              f"{totals.points} points, {len(totals.customers)} customers, {totals.capped} capped")
        if not report.campaigns:
            self.stdout.write("  no new rewards")
        if delivered is not None:
            self.stdout.write(f"  grants delivered: {json_dumps(delivered)}")


def json_dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
