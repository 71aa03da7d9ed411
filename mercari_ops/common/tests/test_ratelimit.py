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
