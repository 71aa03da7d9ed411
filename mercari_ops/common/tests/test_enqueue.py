"""Enqueue after commit: a broker that is down or hung never fails the caller, and gives up within seconds."""

import logging
import threading

import pytest
import redis
from celery import shared_task
from django.conf import settings

from mercari_ops.celery import app
from mercari_ops.common.enqueue import Enqueuer, enqueue, enqueue_after_commit
from mercari_ops.common.ratelimit import rate_limiter

from .brokers import SilentListener, celery_broker, closed_port_url, limiter_redis, queued_tasks

pytestmark = pytest.mark.django_db


@shared_task(name="tests.enqueue_probe")
def probe(ids: list[int]) -> None:
    """Never run: only sent (to the `default` queue, which no worker consumes in tests)."""


def in_thread(fn, *, bound: float = 15.0):
    """fn() on its own thread, joined for at most `bound` seconds: (finished, its result or exception).

    Without socket timeouts a hung Redis blocks the call forever; with them it ends within a few seconds,
    so a bound several times the timeouts tells the two apart without depending on the machine's speed."""
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # handed to the test
            outcome["result"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(bound)
    return not thread.is_alive(), outcome.get("result")


def test_enqueue_sends_when_the_broker_is_up():
    assert enqueue(probe, [1]) is True
    assert queued_tasks()[0] == ("tests.enqueue_probe", "([1],)")


def test_broker_down_gives_up_with_a_warning_naming_the_task_and_ids(caplog):
    with celery_broker(closed_port_url()), caplog.at_level(logging.WARNING, "mercari_ops.common.enqueue"):
        assert enqueue(probe, [7, 8]) is False
    assert "tests.enqueue_probe([7, 8])" in caplog.text and "sweeper" in caplog.text


def test_an_after_commit_enqueue_never_raises_into_the_code_that_committed(django_capture_on_commit_callbacks):
    # without the guard, the callback's OperationalError reached the request after its commit (a 500)
    with celery_broker(closed_port_url()):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            enqueue_after_commit(probe, [1])
    assert len(callbacks) == 1


def test_after_a_failure_enqueues_are_skipped_for_the_pause_then_sent_again(settings):
    now = [1000.0]
    enqueuer = Enqueuer(clock=lambda: now[0])
    settings.REDIS_ENQUEUE_PAUSE_SECONDS = 10
    with celery_broker(closed_port_url()):
        assert enqueuer.enqueue(probe, [1]) is False
    before = queued_tasks()
    now[0] += 9.9  # the broker is back, but this process does not try it yet
    assert enqueuer.enqueue(probe, [2]) is False and queued_tasks() == before
    now[0] += 0.2
    assert enqueuer.enqueue(probe, [3]) is True and queued_tasks() == [("tests.enqueue_probe", "([3],)"), *before]


def test_every_redis_connection_has_the_socket_timeouts():
    timeouts = (settings.REDIS_SOCKET_TIMEOUT_SECONDS, settings.REDIS_CONNECT_TIMEOUT_SECONDS)
    assert all(0 < seconds <= 5 for seconds in timeouts)  # a few seconds (default 2)
    with app.connection_for_write() as conn:  # the broker connection .delay() publishes on
        pool_kwargs = conn.default_channel.client.connection_pool.connection_kwargs
        assert (pool_kwargs["socket_timeout"], pool_kwargs["socket_connect_timeout"]) == timeouts
    assert app.conf.broker_connection_timeout == settings.REDIS_CONNECT_TIMEOUT_SECONDS
    assert app.conf.task_publish_retry_policy["max_retries"] == settings.BROKER_PUBLISH_MAX_RETRIES <= 2
    limiter_kwargs = rate_limiter().backend.client.connection_pool.connection_kwargs
    assert (limiter_kwargs["socket_timeout"], limiter_kwargs["socket_connect_timeout"]) == timeouts
    assert limiter_kwargs["retry"].get_retries() == 1  # not redis-py's 10, each waiting out the timeout


def test_a_hung_broker_makes_the_enqueue_give_up_within_seconds():
    with SilentListener() as hung, celery_broker(hung.url):
        finished, result = in_thread(lambda: enqueue(probe, [1]))
        assert hung.accepted  # it connected: the wait was for an answer that never comes
    assert finished, "the enqueue still waits on the hung broker"
    assert result is False


def test_a_hung_rate_limiter_redis_raises_within_seconds_instead_of_hanging():
    with SilentListener() as hung, limiter_redis(hung.url):
        finished, result = in_thread(lambda: rate_limiter().acquire("probe", limit=1, period=1.0))
    assert finished, "the limiter still waits on the hung Redis"
    assert isinstance(result, redis.exceptions.TimeoutError)
