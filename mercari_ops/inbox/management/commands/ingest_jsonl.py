import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.jsonsafe import json_loads_strict
from mercari_ops.inbox.registry import get_topic, topic_names
from mercari_ops.inbox.services import dead_letter_record, event_clean, inbox_accept_stream


class Command(BaseCommand):
    help = (
        "Feed a file of events (one JSON event per line, not wrapped in a Pub/Sub envelope) through the "
        "inbox: same validation, dedupe and handlers as the push endpoint. Safe to re-run: events already "
        "recorded are skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("topic")
        parser.add_argument("file", help="path to a .jsonl file, or - for standard input")
        parser.add_argument("--batch-size", type=int, default=1000)
        parser.add_argument("--workers", type=int, default=2,
                            help="parallel connections for topics that declare a partition key (customer_id)")
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, topic, file, batch_size, workers, no_progress, **options):
        spec = get_topic(topic)
        if spec is None:
            raise CommandError(f"unknown topic {topic!r}; known: {', '.join(topic_names())}")
        if batch_size < 1 or workers < 1:
            raise CommandError("--batch-size and --workers must be at least 1")
        handle = sys.stdin if file == "-" else open(file, encoding="utf-8")
        invalid = 0

        def cleaned(lines):
            nonlocal invalid
            for line_no, line in enumerate(lines, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    yield event_clean(spec, json_loads_strict(line, field="line"))
                except ValidationFailed as exc:
                    invalid += 1
                    dead_letter_record(topic=topic, body=line, error=f"line {line_no}: {exc.message}", field=exc.field)

        with handle, tqdm(desc=f"ingest {topic}", unit=" events", disable=no_progress, file=sys.stderr) as bar:
            counts = inbox_accept_stream(topic=spec, events=cleaned(handle), batch_size=batch_size, workers=workers,
                                         progress=bar.update)
        summary = ", ".join(f"{k.value} {v}" for k, v in counts.items() if v) or "nothing new"
        self.stdout.write(f"{topic}: {summary}; invalid {invalid} (kept as dead letters)")
