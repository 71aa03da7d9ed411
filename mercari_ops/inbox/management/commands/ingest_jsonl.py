import json
import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.inbox.registry import get_topic, topic_names
from mercari_ops.inbox.services import Outcome, dead_letter_record, event_clean, inbox_accept_batch


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
        parser.add_argument("--no-progress", action="store_true")

    def handle(self, *args, topic, file, batch_size, no_progress, **options):
        spec = get_topic(topic)
        if spec is None:
            raise CommandError(f"unknown topic {topic!r}; known: {', '.join(topic_names())}")
        handle = sys.stdin if file == "-" else open(file, encoding="utf-8")
        counts = {outcome.value: 0 for outcome in Outcome}
        invalid = 0
        batch: list[dict] = []

        def flush():
            for outcome, n in inbox_accept_batch(topic=spec, events=batch).items():
                counts[outcome.value] += n
            batch.clear()

        with handle, tqdm(desc=f"ingest {topic}", unit=" events", disable=no_progress, file=sys.stderr) as bar:
            for line_no, line in enumerate(handle, start=1):
                line = line.strip()
                if not line:
                    continue
                try:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        raise ValidationFailed(f"line {line_no} is not valid JSON", "line") from None
                    batch.append(event_clean(spec, event))
                except ValidationFailed as exc:
                    invalid += 1
                    dead_letter_record(topic=topic, body=line, error=f"line {line_no}: {exc.message}", field=exc.field)
                if len(batch) >= batch_size:
                    bar.update(len(batch))
                    flush()
            if batch:
                bar.update(len(batch))
                flush()
        summary = ", ".join(f"{k} {v}" for k, v in counts.items() if v) or "nothing new"
        self.stdout.write(f"{topic}: {summary}; invalid {invalid} (kept as dead letters)")
