"""A clock for tests that moves only when told, for code that takes a clock (the rate limiters)."""

import threading


class ManualClock:
    """Seconds since the epoch, kept in whole microseconds so schedules compare exactly.

    `sleep` returns at once, having moved the clock by the time asked: code that paces itself on this
    clock runs its whole schedule without waiting, and the test reads where the schedule put it.
    """

    def __init__(self, start: float = 1_767_225_600.0):  # 2026-01-01T00:00:00Z
        self._us = round(start * 1_000_000)
        self._lock = threading.Lock()

    @property
    def us(self) -> int:
        return self._us

    def time(self) -> float:
        return self._us / 1_000_000

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._us += round(seconds * 1_000_000)

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def set_us(self, us: int) -> None:
        with self._lock:
            self._us = us
