"""Group commit: concurrent requests of one process share one transaction.

A commit that waits for the WAL flush, and the round trips around it, cost more
than the rest of an ingestion request. With a threaded server (gunicorn gthread,
as in the Procfile) several requests of one process are in flight at once. Each
queues its already validated write; the first request that finds nobody
committing becomes the *leader*: on its own thread and database connection it
takes everything queued (up to `max_group`, its own item included), applies it in
one transaction and wakes the others with their outcome, so every answer still
means "committed". While it commits, new requests queue up; when it is done it
hands the lead to the oldest of them, which commits the next group. A lone
request commits at once: there is no artificial wait, a group is only what
arrived during the previous commit.

    committer = group_committer("inbox", inbox_accept_group, max_group=200)
    result = committer.submit(item, timeout=30)

Why a leader and not a committer thread: handing every request to another
thread and back cost about 0.4 ms of CPU per request in a gunicorn worker
(two wake-ups, each a GIL hand-off), more than the insert itself. Here a request
is woken at most once (for its outcome, or to lead), and the leader not at all.
The wait is a bare lock, the cheapest one-shot signal CPython has.

The groups of one committer run on the committer's own database connection, lent
to whichever thread leads (one leader at a time), not on the leader's
thread-local one: a threaded server can then run many request threads (so many
requests can wait in one group) without holding a database connection per
thread. The connection obeys CONN_MAX_AGE and is replaced when unusable.

`apply_group(items) -> results` runs on the leader's thread and owns its
transaction. If it raises because the database is unreachable (OperationalError,
InterfaceError), every caller of the group gets OperationalError (503, the sender
retries) and the leader's connection is closed when it is unusable. If it raises
anything else (a DataError or IntegrityError of one item's data, a bug one item
triggers), the group falls back to one transaction per item, so only the culprit
gets its error (a database error as raised, anything else as RuntimeError) and no
neighbour's answer depends on it. A caller already inside a transaction
applies its item alone, inside that transaction (a group must not commit another
request's write as part of a caller's transaction).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connection, connections

from mercari_ops.common.logging import log_safe_error

from .metrics.core import GROUP_COMMIT_SIZE

logger = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("item", "signal", "result", "error", "done", "lead", "abandoned")

    def __init__(self, item: Any):
        self.item = item
        self.signal = threading.Lock()
        self.signal.acquire()  # released once: the outcome is in, or this request is to lead
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = False
        self.lead = False
        self.abandoned = False


class GroupCommitter:
    def __init__(self, name: str, apply_group: Callable[[list], list], max_group: int):
        self.name = name
        self.apply_group = apply_group
        self.max_group = max_group
        self.groups = 0
        self.items = 0
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._leading = False
        self._stopped = False
        self._connection = None  # made on the first group, lent to each leader in turn

    @property
    def alive(self) -> bool:
        return not self._stopped

    @property
    def queued(self) -> int:
        """Requests waiting for a group (not counting the one being committed)."""
        return len(self._queue)

    def stop(self) -> None:
        """Mark this committer as retired: `group_committer` makes a new one on next use (tests)."""
        self._stopped = True
        if self._connection is not None:
            self._connection.close()

    def _connection_lend(self):
        """Install the committer's connection as this thread's default one; return what it replaced."""
        if self._connection is None:
            self._connection = connections.create_connection(DEFAULT_DB_ALIAS)
            self._connection.inc_thread_sharing()  # used by one leader at a time, from any thread
        self._connection.close_if_unusable_or_obsolete()
        own = connections[DEFAULT_DB_ALIAS]
        connections[DEFAULT_DB_ALIAS] = self._connection
        return own

    def submit(self, item: Any, *, timeout: float = 30.0) -> Any:
        if connection.in_atomic_block:
            return self.apply_group([item])[0]
        pending = _Pending(item)
        with self._lock:
            self._queue.append(pending)
            lead = pending.lead = not self._leading
            self._leading = True
        if not lead and not pending.signal.acquire(timeout=timeout):
            with self._lock:
                pending.abandoned = True
                lead = pending.lead and not pending.done
            if not lead and not pending.done:
                # The group may still commit later; the sender retries and the dedupe key absorbs it.
                raise OperationalError(f"{self.name} group commit did not finish within {timeout} s")
        if pending.lead and not pending.done:
            self._lead(pending)
        if pending.error is not None:
            if database_unreachable(pending.error):
                raise OperationalError(f"{self.name} group commit failed: {pending.error}") from pending.error
            if isinstance(pending.error, DatabaseError):  # this item's own data error (DataError, IntegrityError...)
                raise pending.error
            raise RuntimeError(f"{self.name} group commit failed: {pending.error!r}") from pending.error
        return pending.result

    def _lead(self, own: _Pending) -> None:
        """Commit groups until this request's item is in and the queue is empty or has an heir to lead."""
        while True:
            with self._lock:
                count = min(len(self._queue), self.max_group)
                group = [self._queue.popleft() for _ in range(count)]
            if group:
                self._apply(group)
            with self._lock:
                if not self._queue:
                    self._leading = False
                    return
                if own.done:
                    heir = next((p for p in self._queue if not p.abandoned), None)
                    if heir is not None:
                        heir.lead = True
                        heir.signal.release()
                        return
            # our own item is still queued, or only abandoned requests wait: nobody else will commit them

    def _apply(self, group: list[_Pending]) -> None:
        own = None
        try:
            own = self._connection_lend()
            try:
                results = self.apply_group([pending.item for pending in group])
                for pending, result in zip(group, results, strict=True):
                    pending.result = result
            except Exception as exc:
                connection.close_if_unusable_or_obsolete()
                if len(group) == 1 or database_unreachable(exc):
                    raise
                # One item's bad data (or a bug it triggers) must not become its neighbours' answer: each item
                # is applied again in a transaction of its own, and only the culprit gets the error.
                logger.warning("%s group of %s failed (%s): applying its items one by one", self.name,
                               len(group), log_safe_error(exc, [pending.item for pending in group]))
                for pending in group:
                    try:
                        pending.result = self.apply_group([pending.item])[0]
                    except Exception as item_exc:
                        pending.error = item_exc
                        connection.close_if_unusable_or_obsolete()
        except BaseException as exc:  # every caller must be woken, whatever happened
            logger.warning("%s group of %s failed: %s", self.name, len(group), log_safe_error(exc))
            for pending in group:
                pending.error = exc
            connection.close_if_unusable_or_obsolete()
        finally:
            if own is not None:
                connections[DEFAULT_DB_ALIAS] = own
            self.groups += 1
            self.items += len(group)
            GROUP_COMMIT_SIZE.labels(self.name).observe(len(group))
            with self._lock:
                for pending in group:
                    pending.done = True
                    if not pending.lead:
                        pending.signal.release()


def database_unreachable(exc: BaseException) -> bool:
    """The database is down or the connection broke (503, the sender retries), as opposed to an error of the
    data sent (DataError, IntegrityError...: the same input fails again, a 400) or a bug."""
    return isinstance(exc, (OperationalError, InterfaceError))


_committers: dict[tuple[str, int], GroupCommitter] = {}
_lock = threading.Lock()


def group_committers_stop() -> None:
    """Forget this process's committers (tests): the next use starts new ones."""
    with _lock:
        committers = [c for (_, pid), c in _committers.items() if pid == os.getpid()]
        _committers.clear()
    for committer in committers:
        committer.stop()


def group_committer(name: str, apply_group: Callable[[list], list], *, max_group: int) -> GroupCommitter:
    """The committer of this process for `name`, made on first use (and again after a fork)."""
    key = (name, os.getpid())
    committer = _committers.get(key)
    if committer is None or not committer.alive:
        with _lock:
            committer = _committers.get(key)
            if committer is None or not committer.alive:
                committer = _committers[key] = GroupCommitter(name, apply_group, max_group)
    return committer
