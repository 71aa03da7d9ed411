"""Group commit of concurrent pushes: one transaction per group, the same outcomes as one by one."""

import threading

import pytest
from django.db import OperationalError, connection

from conftest import push_body
from history.models import PaymentEntry
from history.tests.factories import card_tree
from mercari_ops.common.groupcommit import GroupCommitter, group_committer, group_committers_stop
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.registry import PermanentEventError
from mercari_ops.inbox.services import Outcome, inbox_accept_group, inbox_receive

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _committers_stopped():
    yield
    group_committers_stop()  # the next test starts with new committers and counters


def receive_concurrently(topic: str, events: list[dict]) -> list:
    """inbox_receive(group_commit=True) for each event from its own thread; results (or exceptions) in order."""
    results: list = [None] * len(events)

    def run(index: int) -> None:
        try:
            results[index] = inbox_receive(topic_name=topic, body=push_body(events[index]), group_commit=True)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def gate_topic(register):
    """A handler that holds its group open on the event "gate" until released, so others queue up."""
    entered, release, calls = threading.Event(), threading.Event(), []

    def handle(event):
        if event["event_id"] == "gate":
            entered.set()
            release.wait(10)
        if event.get("n") == -1:
            raise PermanentEventError("n must not be -1", "n")
        calls.append(event["event_id"])

    register(handle)
    return entered, release, calls


def in_one_group(test_topic, topic: str | None, events: list[dict]) -> tuple[list, list, int]:
    """Push `events` from their own threads, in order, while a gate event holds the committer: they form the
    next group, in that order.

    Returns (results in order, the gate topic's handler calls, groups the committer ran for them).
    """
    name, _, register = test_topic
    entered, release, calls = gate_topic(register)
    gate = threading.Thread(target=receive_concurrently, args=(name, [{"event_id": "gate"}]))
    gate.start()
    assert entered.wait(10)
    committer = group_committer("inbox", inbox_accept_group, max_group=200)
    groups_before = committer.groups
    results: list = [None] * len(events)
    senders = []
    for index, event in enumerate(events):  # queued in this order: each waits for the previous one to queue
        sender = threading.Thread(target=lambda i=index, e=event: results.__setitem__(
            i, receive_concurrently(topic or name, [e])[0]))
        sender.start()
        senders.append(sender)
        while committer.queued < index + 1:
            threading.Event().wait(0.005)
    release.set()
    for sender in senders:
        sender.join(30)
    gate.join(30)
    return results, calls, committer.groups - groups_before - 1


def test_pushes_that_arrive_together_are_recorded_in_one_group_each_once(test_topic):
    # given: while the gate's group is committing, 12 pushes arrive, two of them twice
    events = [{"event_id": f"e-{i}"} for i in range(10)] + [{"event_id": "e-1"}, {"event_id": "e-2"}]
    results, calls, groups = in_one_group(test_topic, None, events)
    # then: the 12 went through in one group (one transaction), each event recorded and handled once
    assert groups == 1
    outcomes = [result.outcome for result in results]
    assert outcomes.count(Outcome.PROCESSED) == 10 and outcomes.count(Outcome.DUPLICATE) == 2
    assert sorted(calls) == sorted(["gate"] + [f"e-{i}" for i in range(10)])
    name = test_topic[0]
    assert InboxEvent.objects.filter(topic=name, status="processed").count() == 11
    with connection.cursor() as cursor:  # rows written by one transaction share its xmin
        cursor.execute("SELECT count(DISTINCT xmin::text) FROM inbox_inboxevent WHERE topic = %s "
                       "AND event_id <> 'gate'", [name])
        assert cursor.fetchone()[0] == 1


def test_a_failing_handler_in_a_group_changes_no_other_outcome(test_topic):
    events = [{"event_id": "ok-1"}, {"event_id": "bad", "n": -1}, {"event_id": "ok-2"}]
    results, calls, groups = in_one_group(test_topic, None, events)
    # the bad event is dead (400 for its sender); the group was replayed one by one for the others
    assert groups == 1
    assert [r.outcome for r in (results[0], results[2])] == [Outcome.PROCESSED, Outcome.PROCESSED]
    assert isinstance(results[1], PermanentEventError) and results[1].field == "n"
    rows = dict(InboxEvent.objects.filter(topic=test_topic[0]).values_list("event_id", "status"))
    assert rows == {"gate": "processed", "ok-1": "processed", "ok-2": "processed", "bad": "dead"}
    # handlers run inside the transaction: the rolled-back group's run of ok-1 left nothing behind
    assert set(calls) == {"gate", "ok-1", "ok-2"}


def test_children_before_their_parent_in_one_group_wait_and_are_released_by_it(test_topic):
    # given: a card transaction's whole tree in one group, newest first
    purchase, card, billed, repaid = card_tree("g1")
    results, _, groups = in_one_group(test_topic, "payment-events", [repaid, billed, card, purchase])
    # then: the children parked, the parent released them in the same transaction, each handled once
    assert groups == 1
    assert [r.outcome for r in results] == [Outcome.WAITING] * 3 + [Outcome.PROCESSED]
    assert PaymentEntry.objects.get(payment_id="tx-g1").state == "repaid"
    rows = InboxEvent.objects.filter(topic="payment-events")
    assert set(rows.values_list("status", "attempts")) == {("processed", 1)}


def test_a_parent_before_its_children_in_one_group_applies_them_directly(test_topic):
    events = card_tree("g2")
    results, _, groups = in_one_group(test_topic, "payment-events", events)
    assert groups == 1
    assert [r.outcome for r in results] == [Outcome.PROCESSED] * 4
    assert PaymentEntry.objects.get(payment_id="tx-g2").state == "repaid"


def test_bad_bodies_never_reach_the_committer(client, settings, test_topic):
    settings.GROUP_COMMIT = True
    name, calls, _ = test_topic
    bad = push_body({"n": 1})
    for _ in range(3):
        response = client.post(f"/pubsub/push/{name}", data=bad, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
        assert (response.status_code, response.json()["field"]) == (400, "event_id")
    assert DeadLetter.objects.get().times_received == 3
    good = client.post(f"/pubsub/push/{name}", data=push_body({"event_id": "e-ok"}), content_type="application/json",
                       HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
    assert good.status_code == 204 and calls == [{"event_id": "e-ok"}]


def test_a_database_failure_fails_every_caller_of_the_group_with_503_and_the_committer_goes_on():
    attempts = []

    def apply_group(items):
        attempts.append(list(items))
        if items[0] == "down":
            raise OperationalError("server closed the connection unexpectedly")  # the database is unreachable
        if items[0] == "bug":
            raise ValueError("a bug")
        return [item.upper() for item in items]

    committer = GroupCommitter("test", apply_group, max_group=10)
    try:
        with pytest.raises(OperationalError, match="server closed"):
            committer.submit("down", timeout=5)
        with pytest.raises(RuntimeError, match="a bug"):
            committer.submit("bug", timeout=5)
        assert committer.submit("ok", timeout=5) == "OK"
    finally:
        committer.stop()
    assert attempts == [["down"], ["bug"], ["ok"]]



def test_a_stopped_committer_is_replaced_on_next_use():
    first = group_committer("inbox", inbox_accept_group, max_group=200)
    first.stop()
    assert not first.alive
    second = group_committer("inbox", inbox_accept_group, max_group=200)
    assert second is not first and second.alive


def test_many_concurrent_submitters_each_get_their_own_result_and_every_item_is_applied_once():
    applied: list = []
    entered = threading.Event()

    def apply_group(items):
        entered.set()
        threading.Event().wait(0.01)  # a commit's time: the others queue up behind the leader
        applied.extend(items)
        return [item * 10 for item in items]

    committer = GroupCommitter("test", apply_group, max_group=8)
    results: dict = {}

    def submit(n: int) -> None:
        results[n] = committer.submit(n, timeout=10)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(60)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: n * 10 for n in range(60)}
    assert sorted(applied) == list(range(60))
    assert committer.items == 60 and committer.groups < 60  # grouped, at most 8 per group
    assert committer.queued == 0 and not committer._leading


def test_a_caller_that_gave_up_waiting_is_still_committed_and_the_lead_passes_on():
    release = threading.Event()
    applied: list = []

    def apply_group(items):
        if "slow" in items:
            release.wait(10)
        applied.extend(items)
        return list(items)

    committer = GroupCommitter("test", apply_group, max_group=10)
    leader = threading.Thread(target=committer.submit, args=("slow",))
    leader.start()
    while not committer._leading:
        threading.Event().wait(0.005)
    # a request queued behind the slow group gives up (503 for its sender, who retries)
    with pytest.raises(OperationalError, match="did not finish within"):
        committer.submit("impatient", timeout=0.05)
    release.set()
    leader.join(10)
    # the abandoned item was committed by the leader anyway (the dedupe key absorbs the retry) ...
    assert applied == ["slow", "impatient"]
    # ... and the next request leads on its own
    assert committer.submit("next", timeout=5) == "next" and not committer._leading


def test_groups_run_on_the_committers_connection_whichever_thread_leads(test_topic):
    # given: a handler that notes the database session and the thread it ran on
    name, _, register = test_topic
    seen = []

    def handle(event):
        seen.append((connection.connection.info.backend_pid, threading.get_ident()))

    register(handle)
    own_connection_opened = []

    def run(index: int) -> None:
        inbox_receive(topic_name=name, body=push_body({"event_id": f"c-{index}"}), group_commit=True)
        own_connection_opened.append(connection.connection is not None)  # this thread's own connection

    # when: 24 request threads push at once, in waves
    for wave in range(3):
        threads = [threading.Thread(target=run, args=(wave * 8 + i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    # then: every event was handled on one database session, lent to each leader in turn; no request
    # thread opened a connection of its own (so threads per process need not match database connections)
    assert len(seen) == 24
    assert len({session for session, _ in seen}) == 1
    assert own_connection_opened == [False] * 24
    assert InboxEvent.objects.filter(topic=name, status="processed").count() == 24
