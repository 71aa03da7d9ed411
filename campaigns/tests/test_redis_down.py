"""Redis down or hung after a commit (issue 16 point 7): bill pushes and their push group still answer 204,
the sweepers settle the bills and deliver the grants later, and a backtest queued meanwhile is requeued.

Transactional tests: the after-commit enqueue runs for real, inside the request, as in production.
"""

import threading

import pytest
from django.db import connection

from campaigns.models import Bill, CampaignBacktest, PointsGrant, PointsLedgerEntry
from campaigns.services import grants_deliver_all, pending_bills_settle
from campaigns.services.backtest import campaign_backtest_queue, campaign_backtests_requeue_stale
from campaigns.tasks import campaign_backtest_task
from campaigns.tests.conftest import BACKTEST_DRAFT_RESULT
from campaigns.tests.factories import bill_event, line
from conftest import push_body
from loyalty.tests.factories import event as activity
from mercari_ops.common.groupcommit import group_committer, group_committers_stop
from mercari_ops.common.tests.brokers import SilentListener, celery_broker, closed_port_url, queued_tasks
from mercari_ops.inbox.services import Outcome, inbox_accept_group, inbox_receive

pytestmark = pytest.mark.django_db(transaction=True)


def test_bill_push_with_redis_down_answers_204_and_the_sweeper_settles_the_bill(push, campaigns, customer):
    customer("c-1", stage=10)
    event = bill_event("c-1", [line("p-1", 3000)])
    with celery_broker(closed_port_url()):
        response = push("card-bill-settled", event)
    assert response.status_code == 204  # was a 500 although the bill was committed
    bill = Bill.objects.get(bill_id=event["bill_id"])
    assert bill.status == "pending"
    # the sweeper settles it; with the broker still down, its grant's enqueue fails too and the grant sweep sends it
    with celery_broker(closed_port_url()):
        report = pending_bills_settle(older_than_seconds=0)
    assert report.as_dict()["bills"] == 1
    bill.refresh_from_db()
    assert bill.status == "settled"
    assert PointsGrant.objects.get().status == "pending"
    assert grants_deliver_all()["sent"] == 1
    assert PointsLedgerEntry.objects.get().points == 30


def test_bill_push_with_redis_hung_answers_204_within_seconds(client, settings):
    event = bill_event("c-1", [line("p-1", 3000)])
    answer: dict = {}

    def send():
        try:
            answer["status"] = client.post("/pubsub/push/card-bill-settled", data=push_body(event),
                                           content_type="application/json",
                                           HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}").status_code
        finally:
            connection.close()

    with SilentListener() as hung, celery_broker(hung.url):
        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        thread.join(15)  # without socket timeouts the push waits on the hung Redis forever
        assert not thread.is_alive(), "the push still waits on the hung broker"
    assert answer["status"] == 204
    assert Bill.objects.get(bill_id=event["bill_id"]).status == "pending"  # for the sweeper


@pytest.fixture
def _committers_stopped():
    yield
    group_committers_stop()


def receive_in_one_group(test_topic, pushes: list[tuple[str, dict]]) -> list:
    """Push each (topic, event) from its own thread while a gate event holds the committer, so they all form
    the next group; returns each push's result (or exception), in order."""
    name, _, register = test_topic
    entered, release = threading.Event(), threading.Event()

    def gate_handle(event):
        entered.set()
        release.wait(10)

    register(gate_handle)
    results: list = [None] * len(pushes)

    def receive(index: int, topic: str, event: dict) -> None:
        try:
            results[index] = inbox_receive(topic_name=topic, body=push_body(event), group_commit=True)
        except Exception as exc:
            results[index] = exc
        finally:
            connection.close()

    results.append(None)  # the gate's own slot, dropped below
    gate = threading.Thread(target=receive, args=(len(pushes), name, {"event_id": "gate"}))
    gate.start()
    assert entered.wait(10)
    committer = group_committer("inbox", inbox_accept_group, max_group=200)
    senders = []
    for index, (topic, event) in enumerate(pushes):
        sender = threading.Thread(target=receive, args=(index, topic, event))
        sender.start()
        senders.append(sender)
        while committer.queued < index + 1:  # queued in this order
            threading.Event().wait(0.005)
    groups_before = committer.groups
    release.set()
    for thread in [gate, *senders]:
        thread.join(30)
    assert committer.groups - groups_before == 2  # the gate's group, then all of these in one
    return results[:len(pushes)]


@pytest.mark.usefixtures("_committers_stopped")
def test_a_push_group_with_a_bill_push_and_loyalty_pushes_all_succeed_with_redis_down(test_topic):
    # given: a bill push among loyalty pushes in one group commit, while the broker refuses connections
    pushes = [("loyalty-activity", activity(customer_id=f"c-{i}")) for i in range(3)]
    pushes.append(("card-bill-settled", bill_event("c-9", [line("p-1", 3000)])))
    pushes += [("loyalty-activity", activity(customer_id=f"c-{i}")) for i in range(3, 6)]
    with celery_broker(closed_port_url()):
        results = receive_in_one_group(test_topic, pushes)
    # then: every push succeeds (each was a 500 before: the bill's enqueue failed the whole group)
    assert [getattr(result, "outcome", result) for result in results] == [Outcome.PROCESSED] * 7
    assert Bill.objects.get().status == "pending"


def test_a_backtest_queued_while_redis_was_down_is_requeued_by_the_sweeper(backtest_draft):
    with celery_broker(closed_port_url()):
        run = campaign_backtest_queue(campaign_id=backtest_draft.pk, month="2026-10", by="mika")
    assert CampaignBacktest.objects.get(pk=run.pk).status == "queued"  # and no task message was sent
    # not stale yet: left alone
    assert campaign_backtests_requeue_stale(older_than_seconds=300) == {"stale": 0, "requeued": 0}
    # stale: its task is sent again (Redis is back), and the worker that takes it runs the backtest
    assert campaign_backtests_requeue_stale(older_than_seconds=0) == {"stale": 1, "requeued": 1}
    assert queued_tasks()[0] == ("campaigns.backtest_run", f"({run.pk},)")
    campaign_backtest_task(run.pk)
    run.refresh_from_db()
    assert (run.status, run.result) == ("done", BACKTEST_DRAFT_RESULT)
    assert campaign_backtests_requeue_stale(older_than_seconds=0) == {"stale": 0, "requeued": 0}


def test_the_backtest_sweeper_is_a_periodic_task_beat_knows():
    from mercari_ops.common.periodic import PERIODIC_TASKS

    assert PERIODIC_TASKS["campaigns.backtest_sweep"].every.total_seconds() == 120
