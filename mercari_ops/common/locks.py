"""Named locks so an overlapping run or a second beat never runs a job twice.

PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`), released
when the body ends or when the connection dies with its worker. SQLite (the
single-machine default): an exclusive `flock` on a file under var/locks/,
also released by the kernel when the process dies.
"""

from __future__ import annotations

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db import connection


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg advisory locks."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


@contextmanager
def try_named_lock(name: str) -> Iterator[bool]:
    """Yield True if this process now holds the lock `name`, False if another does."""
    if connection.vendor == "postgresql":
        key = lock_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
            acquired = cursor.fetchone()[0]
        try:
            yield acquired
        finally:
            if acquired:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        return
    lock_dir = settings.VAR_DIR / "locks"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / f"{hashlib.sha1(name.encode()).hexdigest()}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
