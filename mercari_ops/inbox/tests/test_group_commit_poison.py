"""One poisoned push among neighbours that arrive together (issue 16, point 2): the neighbours' answers and
outcomes are those they would have had alone; only the database being unreachable is a 503.

Pushes go through the real WSGI application from their own threads with group commit on, while a gate event
holds the committer, so they queue up and are written as one group, as under a burst on a gthread worker.
"""

import json
import threading
import uuid

import pytest
from django.db import DataError, OperationalError, connection

from conftest import push_body
from mercari_ops.common.groupcommit import GroupCommitter, group_committer, group_committers_stop
from mercari_ops.common.schema import Int, Schema, Str
from mercari_ops.common.tests.wsgi_client import wsgi_call
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.registry import register_topic, unregister_topic
from mercari_ops.inbox.services import inbox_accept_group

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _group_commit(settings):
    settings.GROUP_COMMIT = True
    yield
    group_committers_stop()


@pytest.fixture
def gated_topic(settings):
    """A topic whose event "gate" holds its group open until released; its schema allows event IDs longer than
    the inbox column (128), as a topic with a too generous schema would: a value that passes validation and
    fails in the database. An event with "smallint" runs a statement the database refuses in its handler."""
    name = f"poison-{uuid.uuid4().hex[:8]}"
    entered, release = threading.Event(), threading.Event()

    def handle(event):
        if event["event_id"] == "gate":
            entered.set()
            release.wait(10)
        if "smallint" in event:
            with connection.cursor() as cursor:
                cursor.execute("SELECT %s::smallint", [event["smallint"]])

    register_topic(name, schema=Schema({"event_id": Str(max_length=1000), "smallint": Int(required=False)}),
                   handle=handle)
    yield name, entered, release
    unregister_topic(name)


def push(topic: str, body: bytes) -> tuple[int, dict | None]:
    status, _, content = wsgi_call(f"/pubsub/push/{topic}", method="POST", body=body,
                                   headers={"Authorization": "Bearer " + _token()})
    connection.close()  # this thread's own connection, if the request opened one
    return status, json.loads(content) if content else None


def _token() -> str:
    from django.conf import settings

    return settings.PUBSUB_PUSH_TOKEN


def pushed_together(gated_topic, bodies: list[bytes], queued: int) -> tuple[list, int]:
    """Push `bodies` at once while the gate holds the committer; (answers in order, groups they took).

    `queued` is how many of them reach the committer (the others are refused before it)."""
    name, entered, release = gated_topic
    gate = threading.Thread(target=push, args=(name, push_body({"event_id": "gate"})))
    gate.start()
    assert entered.wait(10)
    committer = group_committer("inbox", inbox_accept_group, max_group=200)
    groups_before = committer.groups
    answers: list = [None] * len(bodies)
    threads = [threading.Thread(target=lambda i=i, b=b: answers.__setitem__(i, push(name, b)))
               for i, b in enumerate(bodies)]
    for thread in threads:
        thread.start()
    refused = len(bodies) - queued
    for _ in range(4000):  # bounded: if they never line up as expected, release anyway and let the asserts tell
        if committer.queued >= queued and sum(answer is not None for answer in answers) >= refused:
            break
        threading.Event().wait(0.005)
    release.set()
    for thread in threads + [gate]:
        thread.join(30)
    return answers, committer.groups - groups_before - 1


def test_a_nul_event_among_23_valid_pushes_is_refused_alone(gated_topic):
    name = gated_topic[0]
    bodies = [push_body({"event_id": f"ok-{i}"}) for i in range(23)]
    bodies.insert(11, push_body({"event_id": "bad-\u0000"}))
    answers, groups = pushed_together(gated_topic, bodies, queued=23)
    statuses = [status for status, _ in answers]
    assert statuses.count(204) == 23 and statuses[11] == 400 and answers[11][1]["field"] == "event_id"
    assert groups == 1
    assert DeadLetter.objects.get().field == "event_id"
    assert InboxEvent.objects.filter(topic=name, status="processed").count() == 24  # with the gate


def test_an_event_that_passes_validation_but_fails_at_the_insert_changes_no_neighbour(gated_topic):
    # given: 23 valid pushes and one whose event_id (200 characters) the inbox column cannot hold
    name = gated_topic[0]
    bodies = [push_body({"event_id": f"ok-{i}"}) for i in range(23)]
    bodies.insert(5, push_body({"event_id": "x" * 200}))
    # when: they are written as one group
    answers, groups = pushed_together(gated_topic, bodies, queued=24)
    # then: the database refused the group; it fell back to one transaction per event
    statuses = [status for status, _ in answers]
    assert statuses.count(204) == 23 and statuses[5] == 400, answers
    assert groups == 1
    letter = DeadLetter.objects.get()
    assert letter.topic == name and "cannot be stored" in letter.error
    assert InboxEvent.objects.filter(topic=name, status="processed").count() == 24
    assert not InboxEvent.objects.filter(topic=name).exclude(status="processed").exists()


def test_an_event_whose_handler_fails_in_the_database_is_dead_and_changes_no_neighbour(gated_topic):
    name = gated_topic[0]
    bodies = [push_body({"event_id": f"ok-{i}"}) for i in range(10)]
    bodies.insert(3, push_body({"event_id": "too-big", "smallint": 10**6}))
    answers, groups = pushed_together(gated_topic, bodies, queued=11)
    statuses = [status for status, _ in answers]
    # a value the database can never hold: dead at once (400), not retried forever
    assert statuses.count(204) == 10 and statuses[3] == 400, answers
    assert "out of range" in answers[3][1]["error"]
    rows = dict(InboxEvent.objects.filter(topic=name).values_list("event_id", "status"))
    assert rows.pop("too-big") == "dead"
    assert set(rows.values()) == {"processed"} and len(rows) == 11


def run_in_one_group(apply_group, items: list) -> list:
    """Submit `items` from their own threads so they form one group behind a held leader; results or errors."""
    release = threading.Event()

    def apply(batch):
        if batch == ["hold"]:
            release.wait(10)
            return ["held"]
        return apply_group(batch)

    committer = GroupCommitter("test", apply, max_group=10)
    leader = threading.Thread(target=committer.submit, args=("hold",))
    leader.start()
    while not committer._leading:
        threading.Event().wait(0.005)
    outcomes: list = [None] * len(items)

    def submit(index: int) -> None:
        try:
            outcomes[index] = committer.submit(items[index], timeout=10)
        except Exception as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(items))]
    for thread in threads:
        thread.start()
    for _ in range(4000):
        if committer.queued >= len(items):
            break
        threading.Event().wait(0.005)
    release.set()
    for thread in threads + [leader]:
        thread.join(10)
    committer.stop()
    return outcomes


def test_the_committer_applies_a_refused_group_item_by_item_and_only_the_culprit_gets_its_error():
    applied = []

    def apply_group(batch):
        if "bad" in batch:
            raise DataError('value too long for type character varying(128)')
        if "bug" in batch:
            raise ValueError("a bug")
        applied.append(list(batch))
        return [item.upper() for item in batch]

    outcomes = run_in_one_group(apply_group, ["a", "bad", "b", "bug", "c"])
    assert [outcomes[i] for i in (0, 2, 4)] == ["A", "B", "C"]
    assert isinstance(outcomes[1], DataError)
    assert isinstance(outcomes[3], RuntimeError) and "a bug" in str(outcomes[3])
    assert sorted(applied) == [["a"], ["b"], ["c"]]


def test_an_unreachable_database_fails_the_whole_group_with_503():
    def apply_group(batch):
        if "down" in batch:
            raise OperationalError("server closed the connection unexpectedly")
        return batch

    outcomes = run_in_one_group(apply_group, ["a", "down", "b"])
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
