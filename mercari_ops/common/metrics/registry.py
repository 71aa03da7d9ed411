"""Our metrics: counters and histograms counted where things happen, gauges computed at scrape time.

Counters and histograms (`counter()`, `histogram()`) are declared by each area's `metrics.py` at import and
counted on the hot paths: an increment is an append in memory, written to this process's mmap file (multiprocess
mode) by a flusher thread every FLUSH_SECONDS and before this process renders /metrics; no query, no network.
`METRICS_ENABLED=false` makes them no-ops (the push bench's "without metrics").

Scrape-time gauges (backlogs, oldest ages, queue lengths) are declared per area with
`scrape_area_register(area, gauges, read)` from the area's AppConfig.ready, so this core module imports no
app. `snapshot()` runs every area's `read` once, each with indexed queries only; /metrics and the admin's
operations page both show what it returns, so they can never disagree.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .process import multiproc_dir

multiproc_dir()  # before prometheus_client is imported: it picks multiprocess mode from the environment

from django.conf import settings  # noqa: E402
from django.db import InterfaceError, OperationalError  # noqa: E402
from prometheus_client import Counter, Histogram  # noqa: E402
from prometheus_client.core import GaugeMetricFamily  # noqa: E402

logger = logging.getLogger(__name__)

PREFIX = "mercari_ops_"
# Seconds; the defaults of prometheus-client with a finer low end (a push takes a few milliseconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf"))


class _NoChild:
    """What a metric is with METRICS_ENABLED off: every call does nothing."""

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


_NO_CHILD = _NoChild()
FLUSH_SECONDS = 1.0


class _Deferred:
    """One counter or histogram child counted in memory: an increment is a deque append (atomic, no lock, no
    system call), and the process's flusher adds what piled up to prometheus-client's mmap value every
    FLUSH_SECONDS, and before this process renders /metrics. Each value written to the mmap file costs a
    lock, a getpid() and a pack; a push counts five of them, about 2% of its CPU when written one by one."""

    __slots__ = ("_child", "_pending", "_bounds")

    def __init__(self, child: Counter | Histogram, histogram: bool):
        self._child = child
        self._pending: deque[float] = deque()
        self._bounds = child._upper_bounds if histogram else None

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("counters can only be incremented by non-negative amounts")
        self._pending.append(amount)

    def observe(self, amount: float) -> None:
        self._pending.append(amount)

    def discard(self) -> None:
        self._pending.clear()

    def flush(self) -> None:
        take = self._pending.popleft
        values = []
        try:
            while True:  # only what is there now; an append meanwhile waits for the next flush
                values.append(take())
        except IndexError:
            pass
        if not values:
            return
        child = self._child
        if self._bounds is None:
            child.inc(sum(values))
            return
        # Histogram.observe's own rule (the first bucket whose upper bound is >= the value), for many at once.
        counts = [0] * len(self._bounds)
        for value in values:
            counts[bisect_left(self._bounds, value)] += 1
        child._sum.inc(sum(values))
        for index, count in enumerate(counts):
            if count:
                child._buckets[index].inc(count)


_deferred: list[_Deferred] = []
_flusher_lock = threading.Lock()
_flusher_pid: int | None = None


def metrics_flush() -> None:
    """Write every pending count of this process to its mmap file (the flusher's job; also called by readers)."""
    for child in list(_deferred):
        child.flush()


# The flusher sleeps on an event: every FLUSH_SECONDS, or at once when a test sets it; it sets `flushed` after each
# round, so a test waits for the thread's work, never for the clock.
flusher_wake = threading.Event()
flushed = threading.Event()


def _flusher_run(pid: int) -> None:
    while _flusher_pid == pid:
        flusher_wake.wait(FLUSH_SECONDS)
        flusher_wake.clear()
        try:
            metrics_flush()
        except Exception:  # never let counting stop for good
            logger.exception("metrics: flushing the counters failed")
        flushed.set()


def _flusher_ensure() -> None:
    global _flusher_pid
    with _flusher_lock:
        if _flusher_pid != os.getpid():
            _flusher_pid = os.getpid()
            threading.Thread(target=_flusher_run, args=(_flusher_pid,), name="metrics-flush", daemon=True).start()


def _after_fork_in_child() -> None:
    """A forked process (a Celery pool process) starts with its parent's pending counts: they are the parent's
    to write, so they are dropped here, and the child gets its own flusher."""
    global _flusher_pid
    for child in _deferred:
        child.discard()
    _flusher_pid = None
    if _deferred:
        _flusher_ensure()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(metrics_flush)


def _deferred_new(child: Counter | Histogram, histogram: bool) -> _Deferred:
    deferred = _Deferred(child, histogram)
    _deferred.append(deferred)
    _flusher_ensure()
    return deferred


class Metric:
    """A counter or histogram; `labels(*values)` keeps each child, so a hot path pays one dict lookup."""

    def __init__(self, metric: Counter | Histogram | None):
        self._metric = metric
        self._children: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._histogram = isinstance(metric, Histogram)
        self._own = None if metric is None or metric._labelnames else _deferred_new(metric, self._histogram)

    def labels(self, *values) -> _Deferred | _NoChild:
        child = self._children.get(values)
        if child is None:
            if self._metric is None:
                return _NO_CHILD
            with self._lock:
                child = self._children.get(values)
                if child is None:  # the prometheus child is made now: exposed at 0 before its first count
                    child = self._children[values] = _deferred_new(self._metric.labels(*values), self._histogram)
        return child

    def inc(self, amount: float = 1) -> None:
        if self._own is not None:
            self._own.inc(amount)

    def observe(self, amount: float) -> None:
        if self._own is not None:
            self._own.observe(amount)


def _check_name(name: str) -> None:
    if not name.startswith(PREFIX):
        raise ValueError(f"metric {name!r} must start with {PREFIX}")


LabelValues = Callable[[], Iterable[Sequence[str]]]
_initial: list[tuple[Metric, LabelValues]] = []


def counter(name: str, documentation: str, labels: Sequence[str] = (), initial: LabelValues | None = None) -> Metric:
    """A counter; `name` ends in _total (the exposition's name), as Prometheus' conventions want.

    `initial()` gives the label values known in advance (kinds, registered topics): `counters_initialise()`
    exposes them at 0, so the first increment is a change `increase()` sees, not a series born at 1.
    """
    _check_name(name)
    if not name.endswith("_total"):
        raise ValueError(f"counter {name!r} must end with _total")
    if not settings.METRICS_ENABLED:
        return Metric(None)
    metric = Metric(Counter(name.removesuffix("_total"), documentation, list(labels)))
    if initial is not None:
        _initial.append((metric, initial))
    return metric


def counters_initialise() -> None:
    """Every labelled counter's known label values at 0 in this process (a child created, not incremented).

    Called once the apps are ready in each process that counts or serves (gunicorn's post_worker_init, a
    Celery pool process's start) and before each exposition (topics registered late). Cheap: a child is
    made once per label values, after that a dict lookup.
    """
    for metric, values in _initial:
        for label_values in values():
            metric.labels(*label_values)


def histogram(name: str, documentation: str, labels: Sequence[str] = (),
              buckets: Sequence[float] = LATENCY_BUCKETS) -> Metric:
    _check_name(name)
    if not settings.METRICS_ENABLED:
        return Metric(None)
    return Metric(Histogram(name, documentation, list(labels), buckets=buckets))


# --- scrape-time gauges ----------------------------------------------------------------------------------

GaugeValue = float | dict[tuple[str, ...], float]


@dataclass(frozen=True)
class ScrapeGauge:
    name: str
    documentation: str
    labels: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Area:
    gauges: tuple[ScrapeGauge, ...]
    read: Callable[[], dict[str, GaugeValue]]


_areas: dict[str, _Area] = {}
COLLECTOR_UP = ScrapeGauge("mercari_ops_metrics_collector_up",
                           "1 when an area's scrape gauges were read, 0 when reading them failed", ("area",))
COLLECTOR_DURATION = ScrapeGauge("mercari_ops_metrics_collector_duration_seconds",
                                 "Time an area's scrape gauges took to read", ("area",))


def scrape_area_register(area: str, gauges: Iterable[ScrapeGauge], read: Callable[[], dict[str, GaugeValue]]) -> None:
    """Declare an area's scrape gauges; `read()` returns {name: value, or {label values: value}}.

    Registering an area again replaces it (an app's ready() can run twice in tests).
    """
    gauges = tuple(gauges)
    for gauge in gauges:
        _check_name(gauge.name)
    _areas[area] = _Area(gauges, read)


def scrape_gauges() -> list[ScrapeGauge]:
    """Every declared scrape gauge (the ops page's labels and help texts)."""
    return [gauge for area in _areas.values() for gauge in area.gauges] + [COLLECTOR_UP, COLLECTOR_DURATION]


def snapshot() -> dict[str, GaugeValue]:
    """Every scrape gauge now: {name: value} or {name: {(label values...): value}}.

    An area whose read fails (the database down) is left out and reported by mercari_ops_metrics_collector_up
    {area} = 0, so the rest (mercari_ops_database_up among them) still answers. After one area found the
    database unreachable the following ones are not read (each would wait for its connect timeout again).
    """
    values: dict[str, GaugeValue] = {}
    up: dict[tuple[str, ...], float] = {}
    duration: dict[tuple[str, ...], float] = {}
    unreachable = False  # once the database is down, later areas do not each wait for it again
    for name, area in list(_areas.items()):
        started = time.perf_counter()
        try:
            if unreachable:
                raise OperationalError("the database was unreachable earlier in this scrape")
            read = area.read()
        except Exception as exc:
            unreachable = unreachable or isinstance(exc, (OperationalError, InterfaceError))
            logger.warning("metrics: the scrape gauges of %s could not be read: %r", name, exc)
            up[(name,)] = 0.0
        else:
            up[(name,)] = 1.0
            declared = {gauge.name for gauge in area.gauges}
            values.update((key, value) for key, value in read.items() if key in declared)
        duration[(name,)] = time.perf_counter() - started
    values[COLLECTOR_UP.name] = up
    values[COLLECTOR_DURATION.name] = duration
    return values


class ScrapeCollector:
    """A prometheus-client collector over `snapshot()`."""

    def collect(self):
        values = snapshot()
        for gauge in scrape_gauges():
            if gauge.name not in values:
                continue
            family = GaugeMetricFamily(gauge.name, gauge.documentation, labels=gauge.labels or None)
            value = values[gauge.name]
            if gauge.labels:
                for label_values, sample in sorted(value.items()):
                    family.add_metric([str(v) for v in label_values], float(sample))
            else:
                family.add_metric([], float(value))
            yield family


def exposition() -> bytes:
    """The text of /metrics: every process's counters and histograms, then the scrape gauges."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if settings.METRICS_ENABLED:
        counters_initialise()
        metrics_flush()  # this process's own counts up to now; other processes flush every FLUSH_SECONDS
        MultiProcessCollector(registry, path=str(multiproc_dir()))
    registry.register(ScrapeCollector())
    return generate_latest(registry)
