"""The platform's scrape gauges: database and Redis reachable, Celery queues, beat's last tick."""

from __future__ import annotations

import time

import redis
from django.conf import settings

from mercari_ops.inbox.services import database_reachable

from .registry import ScrapeGauge, scrape_area_register

BEAT_TICK_KEY = "mercari_ops:beat:last_tick"
# kombu's Redis transport keeps a queue's messages of priority p in "<queue>\x06\x16<p>" (none: the plain name).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")

GAUGES = (
    ScrapeGauge("mercari_ops_database_up", "1 when PostgreSQL answered this scrape"),
    ScrapeGauge("mercari_ops_redis_up", "1 when the Celery broker's Redis answered this scrape"),
    ScrapeGauge("mercari_ops_celery_queue_length", "Messages waiting in the broker", ("queue",)),
    ScrapeGauge("mercari_ops_celery_beat_last_tick_timestamp_seconds", "Unix time of beat's last tick (0: never)"),
)

_clients: dict[str, redis.Redis] = {}


def broker_client() -> redis.Redis:
    """A client of the broker's Redis that gives up within a second (a scrape must not hang on it)."""
    url = settings.CELERY_BROKER_URL
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    return client


def queue_names() -> list[str]:
    return [queue.name for queue in settings.CELERY_TASK_QUEUES]


def beat_tick_record(now: float | None = None) -> None:
    """Beat's scheduler calls this on every tick (workers.TickingScheduler)."""
    broker_client().set(BEAT_TICK_KEY, repr(now if now is not None else time.time()))


def read() -> dict:
    values: dict = {"mercari_ops_database_up": float(database_reachable())}
    queues = queue_names()
    try:
        pipe = broker_client().pipeline(transaction=False)
        for name in queues:
            for suffix in _PRIORITY_SUFFIXES:
                pipe.llen(name + suffix)
        pipe.get(BEAT_TICK_KEY)
        answers = pipe.execute()
    except (redis.RedisError, OSError):
        values["mercari_ops_redis_up"] = 0.0
        return values
    values["mercari_ops_redis_up"] = 1.0
    step = len(_PRIORITY_SUFFIXES)
    values["mercari_ops_celery_queue_length"] = {
        (name,): float(sum(answers[i * step:(i + 1) * step])) for i, name in enumerate(queues)}
    values["mercari_ops_celery_beat_last_tick_timestamp_seconds"] = float(answers[-1] or 0)
    return values


def register() -> None:
    scrape_area_register("platform", GAUGES, read)
