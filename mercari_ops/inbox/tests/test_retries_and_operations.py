import json
import os
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from datetime import timedelta
from io import StringIO
from pathlib import Path
from urllib.parse import quote

import pytest
from django.contrib.auth.models import Group
from django.core.management import CommandError, call_command
from django.db import OperationalError, connection
from django.utils import timezone

from conftest import push_body
from mercari_ops.common.schema import Schema, Str
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.registry import register_topic, unregister_topic
from mercari_ops.inbox.services import (
    dead_letter_replay,
    inbox_event_discard,
    inbox_event_replay,
    inbox_process_due,
    inbox_retention_apply,
    inbox_sweep_waiting,
)

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[3]


def flaky(times: int, calls: list):
    """A handler that fails transiently `times` times, then succeeds."""

    def handle(event):
        calls.append(event["event_id"])
        if len(calls) <= times:
            raise OperationalError("could not obtain lock on row")

    return handle


def test_transient_failure_is_acked_then_retried_with_backoff(push, test_topic):
    name, _, register = test_topic
    calls: list = []
    register(flaky(1, calls))
    assert push(name, {"event_id": "e-1"}).status_code == 204
    row = InboxEvent.objects.get(event_id="e-1")
    assert (row.status, row.attempts) == ("retry", 1)
    assert row.next_attempt_at > timezone.now()
    assert inbox_process_due() == {}  # backoff not yet over
    assert inbox_process_due(now=row.next_attempt_at + timedelta(seconds=1)) == {"processed": 1}
    row.refresh_from_db()
    assert (row.status, row.attempts, calls) == ("processed", 2, ["e-1", "e-1"])


def test_event_is_dead_after_max_attempts(push, test_topic, settings):
    settings.INBOX_MAX_ATTEMPTS = 3
    name, _, register = test_topic
    calls: list = []
    register(flaky(99, calls))
    push(name, {"event_id": "e-2"})
    far = timezone.now() + timedelta(days=1)
    inbox_process_due(now=far)
    inbox_process_due(now=far)
    row = InboxEvent.objects.get(event_id="e-2")
    assert (row.status, row.attempts, len(calls)) == ("dead", 3, 3)
    assert "could not obtain lock" in row.last_error
    assert inbox_process_due(now=far) == {}  # dead rows are not retried by the sweeper


def test_dead_event_replay_and_discard(push, test_topic, settings):
    settings.INBOX_MAX_ATTEMPTS = 1
    name, _, register = test_topic
    calls: list = []
    register(flaky(1, calls))
    push(name, {"event_id": "e-3"})
    push(name, {"event_id": "e-4"})
    e3 = InboxEvent.objects.get(event_id="e-3")
    e4 = InboxEvent.objects.get(event_id="e-4")
    assert (e3.status, e4.status) == ("dead", "processed")
    assert inbox_event_replay(event_pk=e3.pk).outcome.value == "processed"
    assert inbox_event_replay(event_pk=e3.pk).outcome.value == "duplicate"
    inbox_event_discard(event_pk=e4.pk)  # processed rows are never discarded
    assert InboxEvent.objects.get(pk=e4.pk).status == "processed"


def test_dead_letter_fixed_and_replayed_goes_through_once(push, test_topic):
    name, calls, _ = test_topic
    assert push(name, body=push_body({"event_id": "e-5", "n": "x"})).status_code == 400
    letter = DeadLetter.objects.get()
    letter.raw_body = push_body({"event_id": "e-5", "n": 5}).decode()
    letter.save()
    assert dead_letter_replay(letter_pk=letter.pk, by="op").outcome.value == "processed"
    letter.refresh_from_db()
    assert (letter.status, letter.resolved_by) == ("replayed", "op")
    assert calls == [{"event_id": "e-5", "n": 5}]


def test_waiting_too_long_is_alerted_then_dead(push, test_topic, settings):
    from mercari_ops.inbox.registry import Waiting

    name, _, register = test_topic
    register(lambda event: Waiting(on="never"))
    push(name, {"event_id": "orphan"})
    now = timezone.now()
    assert inbox_sweep_waiting(now=now) == {"alerted": 0, "dead": 0}
    assert inbox_sweep_waiting(now=now + timedelta(seconds=settings.INBOX_WAITING_ALERT_SECONDS + 1)) == {
        "alerted": 1, "dead": 0}
    swept = inbox_sweep_waiting(now=now + timedelta(seconds=settings.INBOX_WAITING_TIMEOUT_SECONDS + 1))
    assert swept["dead"] == 1
    row = InboxEvent.objects.get(event_id="orphan")
    assert (row.status, row.attempts) == ("dead", 0)


def test_retention_clears_old_payloads_but_keeps_dedupe_key(push, test_topic, settings):
    name, calls, _ = test_topic
    push(name, {"event_id": "old"})
    push(name, {"event_id": "new"})
    InboxEvent.objects.filter(event_id="old").update(
        processed_at=timezone.now() - timedelta(days=settings.INBOX_RETENTION_DAYS + 1))
    assert inbox_retention_apply() == 1
    assert InboxEvent.objects.get(event_id="old").payload is None
    assert InboxEvent.objects.get(event_id="new").payload == {"event_id": "new"}
    assert push(name, {"event_id": "old"}).status_code == 204
    assert [c["event_id"] for c in calls] == ["old", "new"]  # the key still dedupes


def test_ingest_jsonl_is_resumable_and_keeps_bad_lines(test_topic, tmp_path):
    name, calls, _ = test_topic
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"event_id": f"j-{i}", "n": i}) for i in range(5)]
    path.write_text("\n".join(lines[:3] + ["{oops", lines[0]]) + "\n")
    call_command("ingest_jsonl", name, str(path), "--no-progress", "--batch-size", "2")
    path.write_text("\n".join(lines) + "\n")
    call_command("ingest_jsonl", name, str(path), "--no-progress")
    assert sorted(c["event_id"] for c in calls) == [f"j-{i}" for i in range(5)]
    assert InboxEvent.objects.filter(topic=name).count() == 5
    assert DeadLetter.objects.get().field == "line"


def test_ingest_jsonl_an_event_the_database_refuses_is_a_dead_letter_and_its_batch_neighbours_land(tmp_path):
    # given: a topic whose schema lets through an event_id longer than the inbox column holds (128)
    name, calls = f"generous-{uuid.uuid4().hex[:8]}", []
    register_topic(name, schema=Schema({"event_id": Str(max_length=1000)}), handle=calls.append)
    try:
        path = tmp_path / "events.jsonl"
        ids = [f"b-{i}" for i in range(3)] + ["x" * 200] + [f"b-{i}" for i in range(3, 6)]
        path.write_text("".join(json.dumps({"event_id": event_id}) + "\n" for event_id in ids))
        out = StringIO()
        # when: all seven go in one batch
        call_command("ingest_jsonl", name, str(path), "--no-progress", "--batch-size", "10", stdout=out)
        # then: the six neighbours are recorded and handled once, the culprit is one dead letter
        assert sorted(c["event_id"] for c in calls) == [f"b-{i}" for i in range(6)]
        assert set(InboxEvent.objects.filter(topic=name).values_list("status", flat=True)) == {"processed"}
        assert InboxEvent.objects.filter(topic=name).count() == 6
        letter = DeadLetter.objects.get()
        assert letter.topic == name and "cannot be stored" in letter.error and "x" * 200 in letter.raw_body
        assert "processed 6" in out.getvalue() and "dead 1" in out.getvalue()
        # and a re-run applies nothing twice
        call_command("ingest_jsonl", name, str(path), "--no-progress", stdout=StringIO())
        assert len(calls) == 6 and DeadLetter.objects.get().times_received == 2
    finally:
        unregister_topic(name)


@pytest.mark.parametrize("option", ["--workers", "--batch-size"])
def test_ingest_jsonl_refuses_a_count_below_one(test_topic, tmp_path, option):
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"event_id": "x-1"}) + "\n")
    with pytest.raises(CommandError, match="at least 1"):
        call_command("ingest_jsonl", test_topic[0], str(path), "--no-progress", option, "0")
    assert not InboxEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_ingest_jsonl_splits_a_partitioned_topic_over_workers_each_key_on_one_in_order(test_topic, tmp_path):
    # given a topic whose events of different `n` never affect each other
    name, _, register = test_topic
    seen: list[tuple[str, list[tuple[int, int]]]] = []
    lock = threading.Lock()

    def handle_batch(events):
        with lock:
            seen.append((threading.current_thread().name, [(e["n"], int(e["event_id"][2:])) for e in events]))

    register(handle_batch=handle_batch, partition_key="n")
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps({"event_id": f"p-{i}", "n": i % 10}) + "\n" for i in range(200)))
    # when it is fed with 3 workers, then again
    first, again = StringIO(), StringIO()
    call_command("ingest_jsonl", name, str(path), "--no-progress", "--batch-size", "5", "--workers", "3",
                 stdout=first)
    call_command("ingest_jsonl", name, str(path), "--no-progress", "--workers", "3", stdout=again)
    # then 3 threads shared the work, every key stayed on one thread, in file order, and nothing ran twice
    threads_of, order_of = defaultdict(set), defaultdict(list)
    for thread, events in seen:
        for n, number in events:
            threads_of[n].add(thread)
            order_of[n].append(number)
    assert len({thread for thread, _ in seen}) == 3
    assert all(len(threads) == 1 for threads in threads_of.values())
    assert all(numbers == sorted(numbers) and len(numbers) == 20 for numbers in order_of.values())
    assert "processed 200" in first.getvalue() and "duplicate 200" in again.getvalue()
    assert InboxEvent.objects.filter(topic=name, status="processed").count() == 200


def test_ingest_jsonl_batch_handler_gets_only_new_events(test_topic, tmp_path):
    name, calls, register = test_topic
    batches: list[list[str]] = []
    register(handle_batch=lambda events: batches.append([e["event_id"] for e in events]))
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps({"event_id": f"b-{i % 3}"}) for i in range(6)))
    call_command("ingest_jsonl", name, str(path), "--no-progress")
    call_command("ingest_jsonl", name, str(path), "--no-progress")
    assert batches == [["b-0", "b-1", "b-2"]]


KILLER = """
import os, sys, django
os.environ["DJANGO_SETTINGS_MODULE"] = "mercari_ops.settings"
django.setup()
from django.contrib.auth.models import Group
from mercari_ops.common.schema import Schema, Str
from mercari_ops.inbox.registry import register_topic
from mercari_ops.inbox.services import inbox_process_due

def handle(event):
    Group.objects.create(name="effect-" + event["event_id"])
    os._exit(9)  # the worker dies mid-handler, after its write, before commit

register_topic(sys.argv[1], schema=Schema({"event_id": Str()}), handle=handle)
inbox_process_due()
"""


@pytest.mark.django_db(transaction=True)
def test_worker_killed_mid_handler_is_handled_later_exactly_once(push, test_topic):
    name, _, register = test_topic
    calls: list = []

    def handle(event):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("deadlock detected")
        Group.objects.create(name="effect-" + event["event_id"])

    register(handle)
    assert push(name, {"event_id": "k-1"}).status_code == 204
    InboxEvent.objects.filter(event_id="k-1").update(next_attempt_at=timezone.now())
    env = dict(os.environ)
    db = connection.settings_dict  # a Unix-socket directory as host goes percent-encoded into the URL
    env["DATABASE_URL"] = f"postgres://{db['USER']}@{quote(db['HOST'], safe='')}:{db['PORT']}/{db['NAME']}"
    killed = subprocess.run([sys.executable, "-c", KILLER, name], cwd=ROOT, env=env, timeout=60)
    assert killed.returncode == 9
    row = InboxEvent.objects.get(event_id="k-1")
    assert row.status == "retry" and not Group.objects.filter(name="effect-k-1").exists()
    assert inbox_process_due(now=timezone.now() + timedelta(minutes=10)) == {"processed": 1}
    assert inbox_process_due(now=timezone.now() + timedelta(minutes=10)) == {}
    assert Group.objects.filter(name="effect-k-1").count() == 1
    assert InboxEvent.objects.get(event_id="k-1").status == "processed"
