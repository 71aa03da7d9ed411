"""Group commit: concurrent requests of one process share one transaction.

A commit that waits for the WAL flush, and the round trips around it, cost more
than the rest of an ingestion request. With a threaded server (gunicorn gthread,
as in the Procfile) several requests of one process are in flight at once; each
hands its already validated write to the process's committer thread and waits
for the outcome. The committer takes everything that queued up while it was
busy (up to `max_group`) and applies it in one transaction, so the caller's
answer still means "committed". A lone request is committed at once: there is
no artificial wait, a group is only what arrived during the previous commit.

    committer = group_committer("inbox", inbox_accept_group, max_group=200)
    result = committer.submit(item, timeout=30)

`apply_group(items) -> results` runs in the committer thread, on that thread's
own database connection, and owns its transaction. If it raises, every caller of
the group gets the error (a database error becomes OperationalError: 503, the
sender retries) and the thread's connection is replaced when it is unusable.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, OperationalError, connection

logger = logging.getLogger(__name__)


class _Pending:
    __slots__ = ("item", "done", "result", "error")

    def __init__(self, item: Any):
        self.item = item
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


_STOP = _Pending(None)


class GroupCommitter:
    def __init__(self, name: str, apply_group: Callable[[list], list], max_group: int):
        self.name = name
        self.apply_group = apply_group
        self.max_group = max_group
        self.groups = 0
        self.items = 0
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=f"group-commit-{name}", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, item: Any, *, timeout: float = 30.0) -> Any:
        pending = _Pending(item)
        self._queue.put(pending)
        if not pending.done.wait(timeout):
            # The group may still commit later; the sender retries and the dedupe key absorbs it.
            raise OperationalError(f"{self.name} group commit did not finish within {timeout} s")
        if pending.error is not None:
            if isinstance(pending.error, DatabaseError):
                raise OperationalError(f"{self.name} group commit failed: {pending.error}") from pending.error
            raise RuntimeError(f"{self.name} group commit failed: {pending.error!r}") from pending.error
        return pending.result

    def _take_group(self) -> list[_Pending]:
        group = [self._queue.get()]
        while len(group) < self.max_group and group[-1] is not _STOP:
            try:
                group.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return group

    def stop(self) -> None:
        """Let the thread finish what is queued, close its database connection and end."""
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            group = self._take_group()
            if group[-1] is _STOP:
                group.pop()
                if group:
                    self._apply(group)
                connection.close()
                return
            self._apply(group)

    def _apply(self, group: list[_Pending]) -> None:
        try:
            results = self.apply_group([pending.item for pending in group])
            for pending, result in zip(group, results, strict=True):
                pending.result = result
        except BaseException as exc:  # every caller must be woken, whatever happened
            logger.warning("%s group of %s failed: %r", self.name, len(group), exc)
            for pending in group:
                pending.error = exc
            connection.close_if_unusable_or_obsolete()
        finally:
            self.groups += 1
            self.items += len(group)
            for pending in group:
                pending.done.set()


_committers: dict[tuple[str, int], GroupCommitter] = {}
_lock = threading.Lock()


def group_committers_stop() -> None:
    """Stop this process's committers (tests, before the test database is dropped)."""
    with _lock:
        committers = [c for (_, pid), c in _committers.items() if pid == os.getpid()]
        _committers.clear()
    for committer in committers:
        committer.stop()


def group_committer(name: str, apply_group: Callable[[list], list], *, max_group: int) -> GroupCommitter:
    """The committer of this process for `name`, started on first use (and again after a fork)."""
    key = (name, os.getpid())
    committer = _committers.get(key)
    if committer is None or not committer.alive:
        with _lock:
            committer = _committers.get(key)
            if committer is None or not committer.alive:
                committer = _committers[key] = GroupCommitter(name, apply_group, max_group)
    return committer
