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

The state lives in Redis (REDIS_URL), changed by atomic Lua scripts that read
Redis's own clock, so every process and machine agrees on time. Celery's
`rate_limit` is per worker and is never relied on.

A limiter built with a `clock` (an object with `time()` and `sleep(seconds)`)
runs on that clock instead: the scripts get its time as an argument in place
of Redis's, and `pace` and `wait` sleep through it. Tests use a manual clock to
assert exact schedules without waiting; production passes none.
"""

from __future__ import annotations

import time
import uuid
from functools import lru_cache
from typing import Protocol

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

# Every script starts with the clock: ARGV[1] is the caller's time in microseconds, or '' for Redis's own
# (production). Keys outlive their last use by `keep` ms: 1 s on Redis's clock; an hour on a caller's, since
# Redis expires keys by its own clock, which a caller's (a test's manual clock) does not follow.
_CLOCK_LUA = """
local now_us, keep
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now_us, keep = tonumber(t[1]) * 1000000 + tonumber(t[2]), 1000
else
  now_us, keep = tonumber(ARGV[1]), 3600000
end
"""

# KEYS[1] = log key; ARGV = clock, limit, period_ms, cost, member prefix
# Returns {granted(1|0), now_ms, wait_ms}
_SLIDING_LOG_LUA = _CLOCK_LUA + """
local now = math.floor(now_us / 1000)
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
local used = redis.call('ZCARD', KEYS[1])
if used + cost <= limit then
  for i = 1, cost do
    redis.call('ZADD', KEYS[1], now, ARGV[5] .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], period + keep)
  return {1, now, 0}
end
if cost > limit then
  return {0, now, -1}
end
local oldest = redis.call('ZRANGE', KEYS[1], used + cost - limit - 1, used + cost - limit - 1, 'WITHSCORES')
local wait = tonumber(oldest[2]) + period - now + 1
return {0, now, wait}
"""

# KEYS[1] = schedule key (the theoretical arrival time, microseconds); ARGV = clock, interval_us, max_ahead_us, count
# Returns {reserved count (0 = none), now_us, wait_us}: the slots are wait_us, wait_us + interval_us, ... from
# now; when none is reserved, ask again in wait_us.
_SCHEDULE_MANY_LUA = _CLOCK_LUA + """
local now = now_us
local interval = tonumber(ARGV[2])
local ahead = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(tat, now)
if slot - now > ahead then
  return {0, now, slot - now - ahead}
end
local count = math.min(tonumber(ARGV[4]), math.floor((ahead - (slot - now)) / interval) + 1)
local last = slot + count * interval
redis.call('SET', KEYS[1], string.format('%d', last), 'PX', math.floor((last - now) / 1000) + keep)
return {count, now, slot - now}
"""

# KEYS[1] = lease set; ARGV = clock, limit, ttl_ms, token
_LEASE_LUA = _CLOCK_LUA + """
local now = math.floor(now_us / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) + keep)
  return 1
end
return 0
"""


class Clock(Protocol):
    """A limiter's clock when it is not Redis's: seconds since the epoch, and a way to wait on it."""

    def time(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class RateLimitExceeded(Exception):
    def __init__(self, wait: float):
        super().__init__(f"rate limited, retry in {wait:.3f}s")
        self.wait = wait


def _clock_arg(now: float | None) -> int | str:
    """The scripts' ARGV[1]: the caller's time in microseconds, or '' for Redis's own clock."""
    return "" if now is None else round(now * 1_000_000)


class _RedisBackend:
    """The limiters' state in Redis. `now` (seconds) replaces Redis's clock for that call; None keeps it."""

    def __init__(self, url: str, prefix: str):
        # Redis down or hung: a call gives up within seconds (redis.TimeoutError / ConnectionError), never hangs.
        # One retry (a pooled connection Redis closed); redis-py's default of 10 would multiply the timeout.
        self.client = redis.Redis.from_url(url, socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
                                           socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS,
                                           retry=Retry(NoBackoff(), 1))
        self.prefix = prefix
        self._log = self.client.register_script(_SLIDING_LOG_LUA)
        self._lease = self.client.register_script(_LEASE_LUA)
        self._schedule_many = self.client.register_script(_SCHEDULE_MANY_LUA)

    def take(self, key: str, limit: int, period: float, cost: int, now: float | None = None
             ) -> tuple[bool, float, float]:
        granted, now_ms, wait_ms = self._log(
            keys=[f"{self.prefix}rl:{key}"],
            args=[_clock_arg(now), limit, int(period * 1000), cost, uuid.uuid4().hex],
        )
        if wait_ms < 0:
            raise ValueError(f"cost {cost} is larger than the limit {limit}")
        return bool(granted), now_ms / 1000.0, wait_ms / 1000.0

    def schedule_many(self, key: str, interval_us: int, max_ahead: float, count: int, now: float | None = None
                      ) -> tuple[int, float, float]:
        reserved, now_us, wait_us = self._schedule_many(
            keys=[f"{self.prefix}gc:{key}"],
            args=[_clock_arg(now), interval_us, int(max_ahead * 1_000_000), count],
        )
        return int(reserved), now_us / 1_000_000, wait_us / 1_000_000

    def lease(self, key: str, limit: int, ttl: float, now: float | None = None) -> str | None:
        token = uuid.uuid4().hex
        ok = self._lease(keys=[f"{self.prefix}cc:{key}"], args=[_clock_arg(now), limit, int(ttl * 1000), token])
        return token if ok else None

    def release(self, key: str, token: str) -> None:
        self.client.zrem(f"{self.prefix}cc:{key}", token)

    def reset(self, key: str) -> None:
        self.client.delete(f"{self.prefix}rl:{key}", f"{self.prefix}cc:{key}", f"{self.prefix}gc:{key}")


def _interval_us(limit: int, period: float) -> int:
    """Slot spacing in microseconds: strictly more than period/limit, so limit + 1 slots span more than a period."""
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return round(period * 1_000_000) // limit + 1


class RateLimiter:
    """Sliding-log grants and even schedules on Redis; on Redis's clock, or on `clock` when given (tests)."""

    def __init__(self, backend: _RedisBackend, *, clock: Clock | None = None):
        self.backend = backend
        self.clock = clock

    def _now(self) -> float | None:
        return None if self.clock is None else self.clock.time()

    def _sleep(self, seconds: float) -> None:
        if self.clock is None:
            time.sleep(seconds)
        else:
            self.clock.sleep(seconds)

    def acquire(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1) -> float:
        """0.0 when `cost` calls are granted now; else seconds to wait (nothing granted)."""
        granted, _, wait = self.backend.take(key, limit, period, cost, self._now())
        return 0.0 if granted else wait

    def acquire_at(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1) -> tuple[bool, float]:
        """Like acquire, but returns (granted, the limiter's clock) for audits and tests."""
        granted, now, _ = self.backend.take(key, limit, period, cost, self._now())
        return granted, now

    def wait(self, key: str, *, limit: int, period: float = 1.0, cost: int = 1, timeout: float | None = None) -> None:
        """Block until granted; raise RateLimitExceeded if that would take longer than `timeout`."""
        elapsed = time.monotonic if self.clock is None else self.clock.time
        deadline = None if timeout is None else elapsed() + timeout
        while True:
            wait = self.acquire(key, limit=limit, period=period, cost=cost)
            if wait == 0.0:
                return
            if deadline is not None and elapsed() + wait > deadline:
                raise RateLimitExceeded(wait)
            self._sleep(wait)

    def reserve(self, key: str, *, limit: int, period: float = 1.0, max_ahead: float | None = None) -> float | None:
        """Reserve the next free slot of an even schedule (one every period/limit seconds) for `key`.

        Returns the seconds until that slot; the caller must not act before it. No sliding window of
        `period` holds more than `limit` slots. None (nothing reserved) when the next free slot is
        more than `max_ahead` seconds away (default: one period), so callers cannot book far ahead.
        """
        reserved, _, wait = self.backend.schedule_many(key, _interval_us(limit, period),
                                                       period if max_ahead is None else max_ahead, 1, self._now())
        return wait if reserved else None

    def reserve_at(self, key: str, *, limit: int, period: float = 1.0) -> float | None:
        """Like reserve, but returns the slot's time on the limiter's clock (for audits and tests)."""
        reserved, now, wait = self.backend.schedule_many(key, _interval_us(limit, period), period, 1, self._now())
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
                                                       count, self._now())
        if not reserved:
            return [], wait
        return [wait + index * interval_us / 1_000_000 for index in range(reserved)], 0.0

    def pace(self, key: str, *, limit: int, period: float = 1.0) -> None:
        """Block until this caller's slot of the even schedule (see `reserve`)."""
        interval_us = _interval_us(limit, period)
        while True:
            reserved, _, wait = self.backend.schedule_many(key, interval_us, period, 1, self._now())
            if wait > 0:
                self._sleep(wait)
            if reserved:
                return

    def reset(self, key: str) -> None:
        self.backend.reset(key)


class ConcurrencyLimiter:
    """Leases on Redis; they expire on Redis's clock, or on `clock` when given (tests)."""

    def __init__(self, backend: _RedisBackend, *, clock: Clock | None = None):
        self.backend = backend
        self.clock = clock

    def acquire(self, key: str, *, limit: int, ttl: float) -> str | None:
        """A lease token if fewer than `limit` are held, else None."""
        return self.backend.lease(key, limit, ttl, None if self.clock is None else self.clock.time())

    def release(self, key: str, token: str) -> None:
        self.backend.release(key, token)


@lru_cache(maxsize=1)
def _backend() -> _RedisBackend:
    if not settings.REDIS_URL:
        raise ImproperlyConfigured("REDIS_URL is empty: the rate and concurrency limiters keep their state in Redis "
                                   "(e.g. REDIS_URL=redis://127.0.0.1:6379/0)")
    return _RedisBackend(settings.REDIS_URL, getattr(settings, "RATE_LIMIT_PREFIX", "mops:"))


def rate_limiter(*, clock: Clock | None = None) -> RateLimiter:
    """The process's rate limiter; `clock` replaces Redis's clock and the process's sleep (tests)."""
    return RateLimiter(_backend(), clock=clock)


def concurrency_limiter(*, clock: Clock | None = None) -> ConcurrencyLimiter:
    """The process's concurrency limiter; `clock` replaces Redis's clock (tests)."""
    return ConcurrencyLimiter(_backend(), clock=clock)
