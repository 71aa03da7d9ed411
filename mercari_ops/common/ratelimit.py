"""Global limits shared by every worker process and machine.

Three primitives:

* `RateLimiter.acquire(key, limit=N, period=P)`: at most N grants for `key` in
  any sliding window of P seconds (a sliding log, so no window -- not just the
  aligned ones -- ever holds more than N). Returns 0.0 when granted, otherwise
  the seconds to wait before asking again.
* `RateLimiter.reserve(key, limit=N, period=P)` / `pace(...)`: evenly spaced
  slots, one every P/N seconds (GCRA without burst), so no sliding window of P
  seconds holds more than N slots either. A caller reserves the next free slot
  and sleeps until it: the schedule does not slip when callers wake up late, and
  there are no bursts at window or slice boundaries. For senders that should
  run steadily just under a limit.
* `ConcurrencyLimiter.acquire(key, limit=M, ttl=T)`: at most M leases held at
  once; a lease not released within T seconds (a dead worker) expires.

Production uses Redis with atomic Lua scripts and Redis's own clock, so every
machine agrees on time. The embedded default (no REDIS_URL) uses a SQLite
file under var/ with `BEGIN IMMEDIATE`, which is exact across the processes of
one machine. Celery's `rate_limit` is per worker and is never relied on.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from functools import lru_cache
from pathlib import Path

from django.conf import settings

# KEYS[1] = log key; ARGV = limit, period_ms, cost, member prefix
# Returns {granted(1|0), now_ms, wait_ms}
_SLIDING_LOG_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
if used + cost <= limit then
  for i = 1, cost do
    redis.call('ZADD', KEYS[1], now, ARGV[4] .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], period + 1000)
  return {1, now, 0}
end
if cost > limit then
  return {0, now, -1}
end
local oldest = redis.call('ZRANGE', KEYS[1], used + cost - limit - 1, used + cost - limit - 1, 'WITHSCORES')
local wait = tonumber(oldest[2]) + period - now + 1
return {0, now, wait}
"""

# KEYS[1] = schedule key (the theoretical arrival time, microseconds); ARGV = interval_us, max_ahead_us, count
# Returns {reserved count (0 = none), now_us, wait_us}: the slots are wait_us, wait_us + interval_us, ... from
# now; when none is reserved, ask again in wait_us.
_SCHEDULE_MANY_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local ahead = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now)
if slot - now > ahead then
  return {0, now, slot - now - ahead}
end
local count = math.min(tonumber(ARGV[3]), math.floor((ahead - (slot - now)) / interval) + 1)
local last = slot + count * interval
redis.call('SET', KEYS[1], string.format('%d', last), 'PX', math.floor((last - now) / 1000) + 1000)
return {count, now, slot - now}
"""

# KEYS[1] = lease set; ARGV = limit, ttl_ms, token
_LEASE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) + 1000)
  return 1
end
return 0
"""


class RateLimitExceeded(Exception):
    def __init__(self, wait: float):
        super().__init__(f"rate limited, retry in {wait:.3f}s")
        self.wait = wait


class _RedisBackend:
    def __init__(self, url: str, prefix: str):
        import redis

        self.client = redis.Redis.from_url(url)
        self.prefix = prefix
        self._log = self.client.register_script(_SLIDING_LOG_LUA)
        self._lease = self.client.register_script(_LEASE_LUA)
        self._schedule_many = self.client.register_script(_SCHEDULE_MANY_LUA)

    def take(self, key: str, limit: int, period: float, cost: int) -> tuple[bool, float, float]:
        granted, now_ms, wait_ms = self._log(
            keys=[f"{self.prefix}rl:{key}"],
            args=[limit, int(period * 1000), cost, uuid.uuid4().hex],
        )
        if wait_ms < 0:
            raise ValueError(f"cost {cost} is larger than the limit {limit}")
        return bool(granted), now_ms / 1000.0, wait_ms / 1000.0

    def schedule_many(self, key: str, interval_us: int, max_ahead: float, count: int) -> tuple[int, float, float]:
        reserved, now_us, wait_us = self._schedule_many(keys=[f"{self.prefix}gc:{key}"],
                                                        args=[interval_us, int(max_ahead * 1_000_000), count])
        return int(reserved), now_us / 1_000_000, wait_us / 1_000_000

    def lease(self, key: str, limit: int, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        ok = self._lease(keys=[f"{self.prefix}cc:{key}"], args=[limit, int(ttl * 1000), token])
        return token if ok else None

    def release(self, key: str, token: str) -> None:
        self.client.zrem(f"{self.prefix}cc:{key}", token)

    def reset(self, key: str) -> None:
        self.client.delete(f"{self.prefix}rl:{key}", f"{self.prefix}cc:{key}", f"{self.prefix}gc:{key}")


class _SqliteBackend:
    """Exact across the processes of one machine (a file lock via BEGIN IMMEDIATE)."""

    def __init__(self, path: Path):
        self.path = str(path)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS grants (key TEXT NOT NULL, at REAL NOT NULL)")
            conn.execute("CREATE INDEX IF NOT EXISTS grants_key_at ON grants (key, at)")
            conn.execute("CREATE TABLE IF NOT EXISTS leases (key TEXT NOT NULL, token TEXT PRIMARY KEY, until REAL)")
            conn.execute("CREATE TABLE IF NOT EXISTS schedules (key TEXT PRIMARY KEY, tat INTEGER NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=OFF")
            self._local.conn = conn
            self._local.pid = os.getpid()
        return conn

    def _immediate(self):
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        return conn

    def take(self, key: str, limit: int, period: float, cost: int) -> tuple[bool, float, float]:
        if cost > limit:
            raise ValueError(f"cost {cost} is larger than the limit {limit}")
        conn = self._immediate()
        try:
            now = time.time()
            conn.execute("DELETE FROM grants WHERE key = ? AND at <= ?", (key, now - period))
            used = conn.execute("SELECT COUNT(*) FROM grants WHERE key = ?", (key,)).fetchone()[0]
            if used + cost <= limit:
                conn.executemany("INSERT INTO grants (key, at) VALUES (?, ?)", [(key, now)] * cost)
                conn.execute("COMMIT")
                return True, now, 0.0
            row = conn.execute(
                "SELECT at FROM grants WHERE key = ? ORDER BY at LIMIT 1 OFFSET ?", (key, used + cost - limit - 1)
            ).fetchone()
            conn.execute("COMMIT")
            return False, now, max(row[0] + period - now, 0.001)
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def schedule_many(self, key: str, interval_us: int, max_ahead: float, count: int) -> tuple[int, float, float]:
        conn = self._immediate()
        try:
            now = int(time.time() * 1_000_000)
            ahead = int(max_ahead * 1_000_000)
            row = conn.execute("SELECT tat FROM schedules WHERE key = ?", (key,)).fetchone()
            slot = max(row[0] if row else 0, now)
            if slot - now > ahead:
                conn.execute("COMMIT")
                return 0, now / 1_000_000, (slot - now - ahead) / 1_000_000
            count = min(count, (ahead - (slot - now)) // interval_us + 1)
            conn.execute("INSERT INTO schedules (key, tat) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET tat = excluded.tat", (key, slot + count * interval_us))
            conn.execute("COMMIT")
            return count, now / 1_000_000, (slot - now) / 1_000_000
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def lease(self, key: str, limit: int, ttl: float) -> str | None:
        conn = self._immediate()
        try:
            now = time.time()
            conn.execute("DELETE FROM leases WHERE key = ? AND until <= ?", (key, now))
            held = conn.execute("SELECT COUNT(*) FROM leases WHERE key = ?", (key,)).fetchone()[0]
            token = None
            if held < limit:
                token = uuid.uuid4().hex
                conn.execute("INSERT INTO leases (key, token, until) VALUES (?, ?, ?)", (key, token, now + ttl))
            conn.execute("COMMIT")
            return token
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def release(self, key: str, token: str) -> None:
        self._connect().execute("DELETE FROM leases WHERE token = ?", (token,))

    def reset(self, key: str) -> None:
        conn = self._connect()
        conn.execute("DELETE FROM grants WHERE key = ?", (key,))
        conn.execute("DELETE FROM leases WHERE key = ?", (key,))
        conn.execute("DELETE FROM schedules WHERE key = ?", (key,))


def _interval_us(limit: int, period: float) -> int:
    """Slot spacing in microseconds: strictly more than period/limit, so limit + 1 slots span more than a period."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return round(period * 1_000_000) // limit + 1


class RateLimiter:
    def __init__(self, backend):
        self.backend = backend

    def acquire(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1) -> float:
        """0.0 when `cost` calls are granted now; else seconds to wait (nothing granted)."""
        granted, _, wait = self.backend.take(key, limit, period, cost)
        return 0.0 if granted else wait

    def acquire_at(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1) -> tuple[bool, float]:
        """Like acquire, but returns (granted, the limiter's clock) for audits and tests."""
        granted, now, _ = self.backend.take(key, limit, period, cost)
        return granted, now

    def wait(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1, timeout: float | None = None) -> None:
        """Block until granted; raise RateLimitExceeded if that would take longer than `timeout`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = self.acquire(key, limit=limit, period=period, cost=cost)
            if wait == 0.0:
                return
            if deadline is not None and time.monotonic() + wait > deadline:
                raise RateLimitExceeded(wait)
            time.sleep(wait)

    def reserve(self, key: str, *, limit: int, period: float = 1.0, max_ahead: float | None = None) -> float | None:
        """Reserve the next free slot of an even schedule (one every period/limit seconds) for `key`.

        Returns the seconds until that slot; the caller must not act before it. No sliding window of
        `period` holds more than `limit` slots. None (nothing reserved) when the next free slot is
        more than `max_ahead` seconds away (default: one period), so callers cannot book far ahead.
        """
        reserved, _, wait = self.backend.schedule_many(key, _interval_us(limit, period),
                                                       period if max_ahead is None else max_ahead, 1)
        return wait if reserved else None

    def reserve_at(self, key: str, *, limit: int, period: float = 1.0) -> float | None:
        """Like reserve, but returns the slot's time on the limiter's clock (for audits and tests)."""
        reserved, now, wait = self.backend.schedule_many(key, _interval_us(limit, period), period, 1)
        return now + wait if reserved else None

    def reserve_many(self, key: str, *, limit: int, count: int, period: float = 1.0,
                     max_ahead: float | None = None) -> tuple[list[float], float]:
        """Reserve up to `count` consecutive slots of the same schedule as `reserve`, in one call.

        Returns (waits, retry_in): the seconds until each reserved slot, in order (the caller must not
        act before each of its slots; period/limit apart). Only slots within `max_ahead` (default: one
        period) are reserved, so fewer than `count` may come back; none when the next free slot is
        further away, and then `retry_in` says when to ask again. For a process that hands slots to
        its own threads: one round trip for several calls instead of one each.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, not {count}")
        interval_us = _interval_us(limit, period)
        reserved, _, wait = self.backend.schedule_many(key, interval_us, period if max_ahead is None else max_ahead,
                                                       count)
        if not reserved:
            return [], wait
        return [wait + index * interval_us / 1_000_000 for index in range(reserved)], 0.0

    def pace(self, key: str, *, limit: int, period: float = 1.0) -> None:
        """Block until this caller's slot of the even schedule (see `reserve`)."""
        interval_us = _interval_us(limit, period)
        while True:
            reserved, _, wait = self.backend.schedule_many(key, interval_us, period, 1)
            if wait > 0:
                time.sleep(wait)
            if reserved:
                return

    def reset(self, key: str) -> None:
        self.backend.reset(key)


class ConcurrencyLimiter:
    def __init__(self, backend):
        self.backend = backend

    def acquire(self, key: str, *, limit: int, ttl: float) -> str | None:
        """A lease token if fewer than `limit` are held, else None."""
        return self.backend.lease(key, limit, ttl)

    def release(self, key: str, token: str) -> None:
        self.backend.release(key, token)


@lru_cache(maxsize=1)
def _backend():
    if settings.REDIS_URL:
        return _RedisBackend(settings.REDIS_URL, getattr(settings, "RATE_LIMIT_PREFIX", "mops:"))
    return _SqliteBackend(settings.VAR_DIR / "ratelimit.sqlite3")


def rate_limiter() -> RateLimiter:
    return RateLimiter(_backend())


def concurrency_limiter() -> ConcurrencyLimiter:
    return ConcurrencyLimiter(_backend())
