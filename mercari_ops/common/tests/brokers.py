"""Redis that is down or hung, for tests: a closed port, and a listener that accepts and never answers.

    with celery_broker(closed_port_url()):      # Celery's publishing connection goes there for the block
        ...
    with SilentListener() as hung, limiter_redis(hung.url):   # the rate limiter's Redis is hung
        ...
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator

import redis
from django.conf import settings
from django.test import override_settings

from mercari_ops.celery import app
from mercari_ops.common import ratelimit
from mercari_ops.common.enqueue import enqueuer


def closed_port_url() -> str:
    """A Redis URL on a loopback port nobody listens on: connections are refused (Redis down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


class SilentListener:
    """A TCP server that accepts connections and never reads or answers: a hung (SIGSTOPped) Redis."""

    def __init__(self):
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        self._server.settimeout(0.05)  # the accept loop notices close() within this
        self._stopped = threading.Event()
        self.accepted: list[socket.socket] = []
        self.url = f"redis://127.0.0.1:{self._server.getsockname()[1]}/0"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._server.close()
        for conn in self.accepted:
            conn.close()

    def __enter__(self) -> SilentListener:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _celery_pools_reset() -> None:
    app._pool = None
    app.amqp._producer_pool = None


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Publish to `url` for the block (CELERY_BROKER_URL from the environment wins over broker_url, not over
    broker_write_url); then the real broker again, and no enqueue pause left behind."""
    before = app.conf.get("broker_write_url")
    app.conf["broker_write_url"] = url  # item, not attribute: Settings.broker_write_url is a read-only property
    _celery_pools_reset()
    enqueuer.pause_clear()
    try:
        yield
    finally:
        app.conf["broker_write_url"] = before
        _celery_pools_reset()
        enqueuer.pause_clear()


@contextlib.contextmanager
def limiter_redis(url: str) -> Iterator[None]:
    """The rate and concurrency limiters keep their state at `url` for the block."""
    ratelimit._backend.cache_clear()
    try:
        with override_settings(REDIS_URL=url):
            yield
    finally:
        ratelimit._backend.cache_clear()


def queued_tasks(queue: str = "default") -> list[tuple[str, str]]:
    """(task name, argsrepr) of the messages waiting in `queue` of the real test broker, newest first."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    try:
        raw = client.lrange(queue, 0, -1)
    finally:
        client.close()
    headers = [json.loads(message)["headers"] for message in raw]
    return [(h["task"], h["argsrepr"]) for h in headers]
