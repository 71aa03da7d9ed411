"""Pacing of the sender's calls: one even schedule per kind of call, shared by every sender process.

LINE counts calls at arrival; `_rate_wait` hands each sending thread its slot on a schedule reserved in
Redis (`_Pacer`), a little under LINE's limit, so no second holds more calls than LINE allows. The
process's pacers (`_pacers`) run on the monotonic clock; a test swaps them for pacers on its own clock.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from django.conf import settings

from mercari_ops.common.ratelimit import Clock, rate_limiter

from ..metrics import LIMITER_SLOTS


def _limit_for(kind: str) -> int:
    return settings.LINE_PUSH_RATE_PER_SECOND if kind == "push" else settings.LINE_MULTICAST_RATE_PER_SECOND


class _MonotonicClock:
    """A pacer's clock in production (`ratelimit.Clock`): monotonic seconds and the process's sleep."""

    @staticmethod
    def time() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class _Pacer:
    """This process's share of one global even schedule, reserved a few slots per Redis call.

    Every worker process paces on one even schedule (a slot every 1/rate seconds, GCRA in Redis), so no
    sliding second holds more than the aimed rate and there are no bursts at slice or window edges. One
    Redis round trip per call cost more CPU than the rest of the pacing; here a process reserves the
    next few consecutive slots at once (`RateLimiter.reserve_many`) and hands them to its sending
    threads in order, each thread sleeping until its own slot. A slot nobody took in time is dropped,
    never used late, and so is a slot whose thread woke from its sleep too late (`late` counts them):
    the schedule does not slip back, so a stall cannot turn into a burst.

    Time is `clock`'s: None in production (monotonic time here, Redis's clock in the limiter); a test
    passes a manual clock, used by both, so a schedule is asserted exactly without waiting for it.
    """

    STALE = 0.005  # seconds past its time after which a slot is dropped instead of used

    def __init__(self, key: str, limit: int, batch: int, *, clock: Clock | None = None):
        self.key, self.limit, self.batch = key, limit, batch
        self.kind = key.removeprefix("line:")  # the metrics' label
        self.clock = clock or _MonotonicClock
        self.limiter = rate_limiter(clock=clock)
        self.lock = threading.Lock()
        self.slots: deque[float] = deque()  # clock time of each reserved slot, in order
        self.waiting = 0  # threads inside wait(): a reservation books no more slots than they can take
        self.late = 0  # slots given up because their thread woke too late to use them on time
        self.stale = 0  # slots nobody took in time

    def wait(self) -> None:
        """Block until this thread's slot."""
        with self.lock:
            self.waiting += 1
        try:
            self._wait()
        finally:
            with self.lock:
                self.waiting -= 1

    def _wait(self) -> None:
        while True:
            with self.lock:
                now = self.clock.time()
                while self.slots and self.slots[0] < now - self.STALE:
                    self.slots.popleft()
                    self.stale += 1
                retry_in = 0.0
                if not self.slots:
                    # Slots booked for threads still busy on the wire would mostly go stale (dropped, and
                    # lost to every other process too): book one per thread waiting now, up to the batch.
                    count = max(1, min(self.batch, self.waiting))
                    waits, retry_in = self.limiter.reserve_many(self.key, limit=self.limit, count=count)
                    LIMITER_SLOTS.labels(self.kind).inc(len(waits))
                    booked = self.clock.time()  # slots are counted from the answer: late, never early
                    self.slots.extend(booked + wait for wait in waits)
                slot = self.slots.popleft() if self.slots else None
            if slot is None:
                self.clock.sleep(retry_in)
                continue
            delay = slot - self.clock.time()
            if delay > 0:
                self.clock.sleep(delay)
            if self.clock.time() - slot <= self.STALE:
                return
            # Woken too late (the GIL, the scheduler): sending now would land among the next slots' calls
            # and bunch them into one second. This slot is lost; take the next free one.
            self.late += 1


class _Pacers:
    """The process's pacers, one per (kind, aimed rate, batch), on one clock (see `_Pacer`)."""

    def __init__(self, *, clock: Clock | None = None):
        self.clock = clock
        self._pacers: dict[tuple[str, int, int], _Pacer] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, limit: int, batch: int) -> _Pacer:
        pacer = self._pacers.get((kind, limit, batch))
        if pacer is None:
            with self._lock:
                pacer = self._pacers.setdefault((kind, limit, batch),
                                                _Pacer(f"line:{kind}", limit, batch, clock=self.clock))
        return pacer

    def unused(self) -> int:
        """Slots booked and not used (threads busy, or woken late) by every pacer so far."""
        return sum(pacer.stale + pacer.late for pacer in list(self._pacers.values()))


_pacers = _Pacers()


def _rate_wait(kind: str) -> None:
    """Take one call from the global budget, paced so LINE never sees more than the limit in any second.

    LINE counts at arrival and thread scheduling moves arrivals by a few ms, so we aim a little under the
    limit (LINE_RATE_SAFETY). Calls are paced on one even schedule shared by every worker (`_Pacer`): no
    bursts at slice or window boundaries, so no sliding second holds more than the aimed rate, and a
    thread that wakes up late does not push the later slots back, so the achieved rate is the aimed rate
    when the senders keep up.
    """
    limit = _limit_for(kind)
    if limit <= 0:  # 0 = no client-side limit (benchmarks of the raw ceiling)
        return
    effective = max(1, int(limit * settings.LINE_RATE_SAFETY))
    if limit < 200:  # a few percent is less than one request here: keep a tenth of the limit as headroom instead
        effective = max(1, min(effective, limit - -(-limit // 10)))
    _pacers.get(kind, effective, max(1, min(2 * settings.LINE_SEND_THREADS, 16))).wait()
