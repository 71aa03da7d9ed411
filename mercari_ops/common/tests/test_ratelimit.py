"""The global limiters on Redis.

Time is the subject here, so the limiters run on a manual clock (`ManualClock`): the Redis scripts get
its time instead of Redis's, and `pace`/`wait` sleep by moving it. Schedules are then asserted exactly,
and the several-process tests move time tick by tick for every process at once, whatever the load.
"""

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from mercari_ops.common import ratelimit
from mercari_ops.common.ratelimit import RateLimitExceeded, _interval_us, concurrency_limiter, rate_limiter
from mercari_ops.common.tests.clock import ManualClock

ROOT = Path(__file__).resolve().parents[3]


def max_in_any_window(times: list[float], period: float) -> int:
    """The most grants in any window (t - period, t]; times and period in one unit, any unit."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


def new_key() -> str:
    return f"test:{uuid.uuid4().hex}"


def us(seconds: float) -> int:
    return round(seconds * 1_000_000)


# ---- several processes, one key, a manual clock moved tick by tick ----------------------------------


def drive(kind: str, *, processes: int, limit: int, period: float, calls: int, count: int,
          ticks: list[int]) -> list[int]:
    """Run `processes` limiter_worker processes on one new key; at each tick (µs) every process makes `calls`
    calls, all processes at once. Returns everything granted (µs), sorted."""
    key = new_key()
    procs = [subprocess.Popen([sys.executable, "-m", "mercari_ops.common.tests.limiter_worker", kind, key,
                               str(limit), str(period), str(calls), str(count)],
                              cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
             for _ in range(processes)]
    granted: list[int] = []
    try:
        for tick in ticks:
            for proc in procs:  # every process gets the tick before any answers: their calls overlap
                proc.stdin.write(f"{tick}\n")
                proc.stdin.flush()
            for proc in procs:
                granted += json.loads(proc.stdout.readline())
    finally:
        for proc in procs:
            proc.stdin.close()
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0] * processes
    return sorted(granted)


def ticks_every(step: float, *, for_seconds: float) -> list[int]:
    start = ManualClock().us
    return [start + index * us(step) for index in range(round(for_seconds / step))]


def sliding_log_model(ticks: list[int], *, demand: int, limit: int, period: float, cost: int) -> list[int]:
    """What a sliding log grants when `demand` calls of `cost` come at every tick: no window holds more."""
    granted: list[int] = []
    for tick in ticks:
        in_window = sum(1 for at in granted if at > tick - us(period))
        granted += [tick] * (min(demand, (limit - in_window) // cost) * cost)
    return granted


def even_schedule_model(ticks: list[int], *, demand: int, limit: int, period: float, count: int) -> list[int]:
    """The slots an even schedule hands out when `demand` calls for up to `count` slots come at every tick."""
    interval, slots, tat = _interval_us(limit, period), [], 0
    for tick in ticks:
        for _ in range(demand):
            slot = max(tat, tick)
            booked = min(count, (us(period) - (slot - tick)) // interval + 1) if slot - tick <= us(period) else 0
            slots += [slot + index * interval for index in range(booked)]
            tat = slot + booked * interval
    return slots


def test_several_processes_never_exceed_the_limit_in_any_window():
    # given: 4 processes each asking once every 10 ms, for 50 calls per 0.5 s: demand is twice the limit
    ticks = ticks_every(0.01, for_seconds=2.0)
    # when
    grants = drive("acquire", processes=4, limit=50, period=0.5, calls=1, count=1, ticks=ticks)
    # then: no sliding window of one period holds more than the limit, across all processes ...
    assert max_in_any_window(grants, us(0.5)) == 50
    # ... and every call the limit allowed was granted: no starving (200 over 2 s)
    assert grants == sliding_log_model(ticks, demand=4, limit=50, period=0.5, cost=1)
    assert len(grants) == 200


def test_batch_costs_count_as_many_calls():
    ticks = ticks_every(0.01, for_seconds=1.5)
    grants = drive("acquire", processes=3, limit=40, period=0.5, calls=1, count=7, ticks=ticks)
    assert max_in_any_window(grants, us(0.5)) <= 40
    assert grants == sliding_log_model(ticks, demand=3, limit=40, period=0.5, cost=7)


def test_paced_slots_of_several_processes_are_evenly_spaced_and_never_exceed_the_limit():
    # given: 3 processes asking for a slot 3 times every 10 ms, on a schedule of 100 per 0.5 s (one per 5.001 ms)
    ticks = ticks_every(0.01, for_seconds=1.5)
    # when
    slots = drive("reserve", processes=3, limit=100, period=0.5, calls=3, count=1, ticks=ticks)
    # then: consecutive slots (of any process) exactly one interval apart, from the first call on ...
    assert slots == [ticks[0] + index * 5001 for index in range(len(slots))]
    assert max_in_any_window(slots, us(0.5)) <= 100
    # ... and the schedule does not slip: every slot within a period of the last call was booked
    assert slots == even_schedule_model(ticks, demand=9, limit=100, period=0.5, count=1)
    assert slots[-1] > ticks[-1] + us(0.5) - 5001


def test_slots_reserved_in_batches_by_several_processes_never_exceed_the_limit():
    ticks = ticks_every(0.01, for_seconds=1.5)
    slots = drive("reserve_many", processes=3, limit=100, period=0.5, calls=1, count=4, ticks=ticks)
    # batches of several processes interleave without overlap: one slot every interval, none twice
    assert slots == [ticks[0] + index * 5001 for index in range(len(slots))]
    assert max_in_any_window(slots, us(0.5)) <= 100
    assert slots == even_schedule_model(ticks, demand=3, limit=100, period=0.5, count=4)


# ---- one client on a manual clock -----------------------------------------------------------------


def test_acquire_returns_wait_time_when_exhausted():
    clock = ManualClock()
    limiter, key = rate_limiter(clock=clock), new_key()
    assert [limiter.acquire(key, limit=3, period=10) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire(key, limit=3, period=10) == 10.001  # the oldest grant leaves the window, plus 1 ms
    with pytest.raises(ValueError):
        limiter.acquire(key, limit=3, period=10, cost=4)
    clock.advance(9.999)
    assert limiter.acquire(key, limit=3, period=10) == 0.002
    clock.advance(0.001)  # the first grants are a full period old: out of every window that ends now
    assert [limiter.acquire(key, limit=3, period=10) for _ in range(4)] == [0.0, 0.0, 0.0, 10.001]


def test_wait_sleeps_until_granted_or_refuses_a_wait_beyond_its_timeout():
    clock = ManualClock()
    limiter, key = rate_limiter(clock=clock), new_key()
    start = clock.us
    for _ in range(2):
        limiter.wait(key, limit=2, period=10)
    with pytest.raises(RateLimitExceeded) as refused:
        limiter.wait(key, limit=2, period=10, timeout=5)
    assert (refused.value.wait, clock.us) == (10.001, start)  # it did not sleep first
    limiter.wait(key, limit=2, period=10)
    assert clock.us == start + us(10.001)


def test_concurrency_limiter_caps_leases_and_expires_dead_holders():
    clock = ManualClock()
    limiter, key = concurrency_limiter(clock=clock), new_key()
    tokens = [limiter.acquire(key, limit=2, ttl=0.3) for _ in range(3)]
    assert tokens[0] and tokens[1] and tokens[2] is None
    limiter.release(key, tokens[0])
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    clock.advance(0.299)
    assert limiter.acquire(key, limit=2, ttl=0.3) is None  # both still held
    clock.advance(0.001)  # their ttl has passed: leases a dead worker would never release are gone
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    assert limiter.acquire(key, limit=2, ttl=0.3) is None


def test_reserve_books_evenly_spaced_slots_and_not_beyond_max_ahead():
    clock = ManualClock()
    limiter, key = rate_limiter(clock=clock), new_key()
    waits = [limiter.reserve(key, limit=10, period=1.0, max_ahead=0.35) for _ in range(5)]
    # slots one interval (0.1 s + 1 µs) apart; the fifth would be 0.4 s away: not booked
    assert [us(wait) for wait in waits[:4]] == [0, 100_001, 200_002, 300_003] and waits[4] is None
    limiter.reset(key)
    assert limiter.reserve(key, limit=10, period=1.0) == 0.0


def test_pace_blocks_until_the_callers_slot():
    clock = ManualClock()
    limiter, key = rate_limiter(clock=clock), new_key()
    start, woke = clock.us, []
    for _ in range(6):
        limiter.pace(key, limit=20, period=1.0)
        woke.append(clock.us - start)
    assert woke == [0, 50_001, 100_002, 150_003, 200_004, 250_005]  # each caller at its slot, not before
    clock.advance(1.0)  # idle for a while: the next caller goes at once, the schedule does not bank slots
    limiter.pace(key, limit=20, period=1.0)
    limiter.pace(key, limit=20, period=1.0)
    assert clock.us - start == 1_250_005 + 50_001


def test_reserve_many_books_consecutive_slots_of_the_same_schedule():
    clock = ManualClock()
    limiter, key = rate_limiter(clock=clock), new_key()
    # given 10 slots a second, only those within 0.35 s may be booked
    waits, _ = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
    assert [us(wait) for wait in waits] == [0, 100_001, 200_002]
    # the next batch gets only the slot left within max_ahead, and single reservations queue behind it
    more, _ = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
    assert [us(wait) for wait in more] == [300_003]
    none, retry_in = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
    assert (none, us(retry_in)) == ([], 400_004 - 350_000)
    assert limiter.reserve(key, limit=10, period=1.0, max_ahead=0.35) is None
    clock.advance(retry_in)
    assert us(limiter.reserve(key, limit=10, period=1.0, max_ahead=0.35)) == 350_000


# ---- production: Redis's own clock ----------------------------------------------------------------


def test_without_a_clock_the_limiters_run_on_redis_time():
    limiter, key = rate_limiter(), new_key()
    granted, at = limiter.acquire_at(key, limit=5, period=10)
    assert granted and abs(at - time.time()) < 60  # Redis's clock (same machine), not a test's
    first, second = limiter.reserve_at(key, limit=2, period=60), limiter.reserve_at(key, limit=2, period=60)
    assert us(second) - us(first) == 30_000_001  # one interval apart, unless 30 s passed between the calls
    # keys outlive their last use by a second on Redis's clock (the schedule's: its last slot, 60 s ahead) ...
    client, prefix = limiter.backend.client, limiter.backend.prefix
    assert 0 < client.pttl(f"{prefix}rl:{key}") <= 11_000
    assert 0 < client.pttl(f"{prefix}gc:{key}") <= 61_000
    # ... and by an hour on a manual clock, which Redis's expiry does not follow
    rate_limiter(clock=ManualClock()).acquire(key, limit=10, period=10)
    assert client.pttl(f"{prefix}rl:{key}") > 3_600_000


def test_redis_is_required(settings):
    settings.REDIS_URL = ""
    ratelimit._backend.cache_clear()
    try:
        with pytest.raises(ImproperlyConfigured, match="REDIS_URL"):
            rate_limiter()
    finally:
        ratelimit._backend.cache_clear()
