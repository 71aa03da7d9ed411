"""Enqueue after commit without ever failing the request that committed.

    enqueue_after_commit(settle_bills_task, bill_ids)   # instead of on_commit(lambda: task.delay(bill_ids))

Every task queued after a commit takes IDs whose state is in PostgreSQL, and a periodic sweeper picks up
what was never queued: pending bills and due grants (`campaigns.settle_sweep`), pending repayment requests
(`history.repayment_sweep`), unfinished recompute jobs (`loyalty.recompute_resume`), due LINE messages
and rich menus (`line.kick_senders`), queued backtests (`campaigns.backtest_sweep`). So a broker that is
down or hung must not turn a committed request into a 500 (or hold a whole push group): the enqueue is
given up with a WARNING naming the task and its IDs, and the sweeper delivers later.

A hung broker costs at most the socket timeouts (REDIS_SOCKET_TIMEOUT_SECONDS and Celery's publish retry
policy, settings.py). After a failure this process skips enqueues for REDIS_ENQUEUE_PAUSE_SECONDS, so a
broker that is down costs one request that wait, not every request of the process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable

from django.conf import settings
from django.db import transaction
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

# What a broker that is down, hung or refusing raises from .delay()/apply_async (kombu wraps most of them
# in OperationalError; a socket error can come through as it is).
BROKER_ERRORS: tuple[type[BaseException], ...] = (KombuError, RedisError, OSError)


def _describe(args: tuple, kwargs: dict) -> str:
    text = ", ".join([repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()])
    return text if len(text) <= 300 else f"{text[:300]}..."


class Enqueuer:
    """Sends tasks to the broker, and pauses after a broker failure (`clock` is injectable for tests)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def pause_clear(self) -> None:
        with self._lock:
            self._paused_until = 0.0

    def paused(self) -> bool:
        return self.clock() < self._paused_until

    def enqueue(self, task, *args, **kwargs) -> bool:
        """`task.delay(*args, **kwargs)`; False (logged) when the broker failed or is paused after a failure."""
        eager = task.app.conf.task_always_eager  # runs inline, no broker involved
        if not eager and self.paused():
            logger.warning("enqueue of %s(%s) skipped: the broker failed moments ago; its sweeper picks it up",
                           task.name, _describe(args, kwargs))
            return False
        try:
            task.delay(*args, **kwargs)
        except BROKER_ERRORS as exc:
            with self._lock:
                self._paused_until = self.clock() + settings.REDIS_ENQUEUE_PAUSE_SECONDS
            logger.warning("could not enqueue %s(%s): %s: %s; its sweeper picks it up", task.name,
                           _describe(args, kwargs), type(exc).__name__, exc)
            return False
        return True


enqueuer = Enqueuer()


def enqueue(task, *args, **kwargs) -> bool:
    """Send `task` now; never raises for a broker failure (see `Enqueuer.enqueue`)."""
    return enqueuer.enqueue(task, *args, **kwargs)


def enqueue_after_commit(task, *args, **kwargs) -> None:
    """Send `task` once the current transaction commits; a broker failure is logged, never raised."""
    transaction.on_commit(functools.partial(enqueuer.enqueue, task, *args, **kwargs))
