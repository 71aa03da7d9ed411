import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

from mercari_ops.common.ratelimit import concurrency_limiter, rate_limiter

ROOT = Path(__file__).resolve().parents[3]
BACKEND = "redis" if settings.REDIS_URL else "sqlite"


def max_in_any_window(times: list[float], period: float) -> int:
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= period:
            start += 1
        best = max(best, end - start + 1)
    return best


def hammer(key: str, *, processes: int, limit: int, period: float, seconds: float, cost: int = 1) -> list[float]:
    procs = [
        subprocess.Popen([sys.executable, "-m", "mercari_ops.common.tests.limiter_worker", key, str(limit),
                          str(period), str(seconds), str(cost)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    grants: list[float] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        grants += json.loads(out)
    return grants


def test_several_processes_never_exceed_the_limit_in_any_window():
    key = f"test:{uuid.uuid4().hex}"
    grants = hammer(key, processes=4, limit=50, period=0.5, seconds=2.0)
    # every sliding window of one period holds at most `limit` grants, across all processes
    assert max_in_any_window(grants, 0.5) <= 50
    # and the limiter is not starving callers: close to limit per period was granted
    assert len(grants) >= 50 * (2.0 / 0.5) * 0.8, f"{BACKEND} granted only {len(grants)}"


def test_batch_costs_count_as_many_calls():
    key = f"test:{uuid.uuid4().hex}"
    grants = hammer(key, processes=3, limit=40, period=0.5, seconds=1.5, cost=7)
    assert max_in_any_window(grants, 0.5) <= 40


def test_acquire_returns_wait_time_when_exhausted():
    limiter = rate_limiter()
    key = f"test:{uuid.uuid4().hex}"
    assert [limiter.acquire(key, limit=3, period=10) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.acquire(key, limit=3, period=10)
    assert 9.0 < wait <= 10.01
    with pytest.raises(ValueError):
        limiter.acquire(key, limit=3, period=10, cost=4)


def test_concurrency_limiter_caps_leases_and_expires_dead_holders():
    limiter = concurrency_limiter()
    key = f"test:{uuid.uuid4().hex}"
    tokens = [limiter.acquire(key, limit=2, ttl=0.3) for _ in range(3)]
    assert tokens[0] and tokens[1] and tokens[2] is None
    limiter.release(key, tokens[0])
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    import time

    time.sleep(0.35)  # leases of a dead worker expire
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    assert limiter.acquire(key, limit=2, ttl=0.3) is not None
    assert limiter.acquire(key, limit=2, ttl=0.3) is None


# ---- even schedule (reserve / pace) ------------------------------------------------------------------
PACE_WORKER = """
import json, os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
django.setup()
from mercari_ops.common.ratelimit import rate_limiter
key, limit, period, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
limiter, slots, deadline = rate_limiter(), [], time.monotonic() + seconds
while time.monotonic() < deadline:
    slot = limiter.reserve_at(key, limit=limit, period=period)
    if slot is None:
        time.sleep(0.001)
        continue
    slots.append(slot)
    time.sleep(max(0.0, slot - time.time()))  # act at the slot, like pace()
print(json.dumps(slots))
"""


def slots_of_processes(worker: str, count: int = 3) -> list[float]:
    """Run `worker` in `count` processes on one new key (limit 100 per 0.5 s, for 1.5 s); all slots, sorted."""
    key = f"test:{uuid.uuid4().hex}"
    procs = [subprocess.Popen([sys.executable, "-c", worker, key, "100", "0.5", "1.5"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(count)]
    slots = []
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        slots += json.loads(out)
    return sorted(slots)


def test_paced_slots_of_several_processes_are_evenly_spaced_and_never_exceed_the_limit():
    slots = slots_of_processes(PACE_WORKER)
    assert max_in_any_window(slots, 0.5) <= 100
    # no bursts: consecutive slots (of any process) are at least period/limit apart
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= 0.005
    # and the schedule does not slip: about the full 200/s was booked over the 1.5 s
    assert len(slots) >= 200 * 1.5 * 0.9, f"{BACKEND} booked only {len(slots)}"


def _backends(tmp_path):
    from mercari_ops.common.ratelimit import RateLimiter, _backend, _SqliteBackend

    backends = [("sqlite", RateLimiter(_SqliteBackend(tmp_path / "ratelimit.sqlite3")))]
    if settings.REDIS_URL:
        backends.append(("redis", RateLimiter(_backend())))
    return backends


def test_reserve_books_evenly_spaced_slots_and_not_beyond_max_ahead(tmp_path):
    for name, limiter in _backends(tmp_path):
        key = f"test:{uuid.uuid4().hex}"
        waits = [limiter.reserve(key, limit=10, period=1.0, max_ahead=0.35) for _ in range(5)]
        assert waits[4] is None, name  # the fifth slot is 0.4 s away: not booked
        # each wait is its slot (0, 100, 200, 300 ms) less the time the calls before it took
        assert all(slot - 0.05 <= wait <= slot + 0.001
                   for wait, slot in zip(waits[:4], [0.0, 0.1, 0.2, 0.3], strict=True)), (name, waits)
        limiter.reset(key)
        assert limiter.reserve(key, limit=10, period=1.0) == 0.0, name


def test_pace_blocks_until_the_callers_slot(tmp_path):
    import time

    for name, limiter in _backends(tmp_path):
        key = f"test:{uuid.uuid4().hex}"
        started = time.monotonic()
        for _ in range(6):
            limiter.pace(key, limit=20, period=1.0)
        assert 0.24 <= time.monotonic() - started < 0.6, name  # slots at 0, 50, ..., 250 ms


def test_reserve_many_books_consecutive_slots_of_the_same_schedule(tmp_path):
    for name, limiter in _backends(tmp_path):
        key = f"test:{uuid.uuid4().hex}"
        # given 10 slots a second, only those within 0.35 s may be booked
        waits, _ = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
        assert len(waits) == 3, name
        assert all(slot - 0.05 <= wait <= slot + 0.001
                   for wait, slot in zip(waits, [0.0, 0.1, 0.2], strict=True)), (name, waits)
        # the next batch gets only the slot left within max_ahead, and single reservations queue behind it
        more, _ = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
        assert len(more) == 1 and 0.25 <= more[0] <= 0.301, (name, more)
        none, retry_in = limiter.reserve_many(key, limit=10, count=3, period=1.0, max_ahead=0.35)
        assert none == [] and 0.0 < retry_in <= 0.051, (name, retry_in)
        assert limiter.reserve(key, limit=10, period=1.0, max_ahead=0.35) is None, name
        limiter.reset(key)


BATCH_WORKER = """
import json, os, sys, time
import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
django.setup()
from mercari_ops.common.ratelimit import _interval_us, rate_limiter
key, limit, period, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
limiter, slots, deadline = rate_limiter(), [], time.monotonic() + seconds
interval = _interval_us(limit, period) / 1_000_000
while time.monotonic() < deadline:
    # the backend call behind reserve_many, for the slots on the limiter's own clock
    count, now, wait = limiter.backend.schedule_many(key, _interval_us(limit, period), period, 4)
    if not count:
        time.sleep(wait)
        continue
    slots += [now + wait + index * interval for index in range(count)]
    time.sleep(max(0.0, slots[-1] - time.time()))  # act at the slots, like a sender
print(json.dumps(slots))
"""


def test_slots_reserved_in_batches_by_several_processes_never_exceed_the_limit():
    slots = slots_of_processes(BATCH_WORKER)
    assert max_in_any_window(slots, 0.5) <= 100
    assert min(b - a for a, b in zip(slots, slots[1:], strict=False)) >= 0.005  # batches interleave, no overlap
    assert len(slots) >= 200 * 1.5 * 0.9, f"{BACKEND} booked only {len(slots)}"
