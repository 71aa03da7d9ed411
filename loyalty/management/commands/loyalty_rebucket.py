import argparse
import sys
from contextlib import ExitStack
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from loyalty.services.rebucket import RebucketReport, rebucket_run
from mercari_ops.common.errors import DomainError


def _instant(value: str) -> datetime:
    try:
        instant = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {value!r}") from None
    if instant.tzinfo is None:
        raise argparse.ArgumentTypeError("give the offset, e.g. 2026-12-05T19:00:00Z")
    return instant


def _counts(report: RebucketReport) -> str:
    return (f"read {report.read}, {'would move' if report.dry_run else 'moved'} {report.moved}, "
            f"already moved {report.already_moved}, not counted in the inbox {report.not_counted}, "
            f"counted after the switch {report.counted_after_switch}, same month {report.same_month}, "
            f"bad lines {report.bad}")


class Command(BaseCommand):
    help = (
        "Move loyalty activity counted in its UTC month (before the switch to Japan's business months) to its "
        "business month: from the inbox rows that still hold a payload and from --jsonl exports of the original "
        "events. Only events the inbox counted before --switched-at move, each once (a marker row per event): "
        "safe to re-run, and a stopped run resumes by running it again. Affected customers are restaged."
    )

    def add_arguments(self, parser):
        parser.add_argument("--switched-at", type=_instant, required=True,
                            help="when the release with business months started counting loyalty events "
                                 "(RFC 3339); events counted from then on are in their business month already")
        parser.add_argument("--jsonl", nargs="+", action="extend", default=[], metavar="FILE",
                            help="exports of the original events, one JSON event per line (- for standard input)")
        parser.add_argument("--batch", type=int, default=2000, help="events per transaction")
        parser.add_argument("--dry-run", action="store_true", help="count what would move; write nothing")

    def handle(self, *args, switched_at, jsonl, batch, dry_run, **options):
        with ExitStack() as files:
            sources = []
            for path in jsonl:
                try:
                    lines = sys.stdin if path == "-" else files.enter_context(open(path, encoding="utf-8"))
                except OSError as exc:
                    raise CommandError(f"cannot read {path}: {exc.strerror}") from None
                sources.append((path, lines))
            try:
                report = rebucket_run(switched_at=switched_at, jsonl=sources, batch_size=batch, dry_run=dry_run,
                                      progress=self._progress)
            except DomainError as exc:
                raise CommandError(exc.message) from None
        self._summary(report)

    def _progress(self, source: str, report: RebucketReport) -> None:
        self.stdout.write(f"batch {report.batches} [{source}]: {_counts(report)}")

    def _summary(self, report: RebucketReport) -> None:
        write = self.stdout.write
        write(("Dry run, nothing written: " if report.dry_run else "Done: ") + _counts(report)
              + ("" if report.dry_run else f", stage changes {report.stage_changes}") + ".")
        if report.bad_lines:
            write("Bad lines (skipped):")
            for line in report.bad_lines:
                write(f"  {line.where}: {line.error}")
            if report.bad > len(report.bad_lines):
                write(f"  ... and {report.bad - len(report.bad_lines)} more")
        if report.months_coincide:
            write("BUSINESS_TIME_ZONE has the months of UTC: no event changes month, nothing needs moving.")
            return
        if not report.payloadless:
            write("The inbox holds no loyalty-activity event counted before the switch without its payload: "
                  "nothing is left that cannot be rebuilt.")
            return
        switched = report.switched_at.isoformat().replace("+00:00", "Z")
        write(f"Without payload: {report.payloadless} loyalty-activity events counted before {switched} keep "
              f"no payload in the inbox (the topic keeps none); only the publisher's export has their occurred_at.")
        unchecked = max(report.payloadless - report.payloadless_matched, 0)
        if not unchecked:
            write("All of them were in the --jsonl exports of this run.")
            return
        write(f"Cannot be rebuilt by this run: {'at least ' if report.payloadless_matched else ''}{unchecked} of "
              f"them were not in the --jsonl exports (found: {report.payloadless_matched}); those that fell in "
              f"the last 9 hours of a UTC month are still counted in it. Get the publisher's export of those "
              f"events (docs/operations.md) and run again with --jsonl: events already moved are skipped.")
