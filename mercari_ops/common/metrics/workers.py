"""Celery's side of the metrics: task run times and failures, the multiprocess folder, beat's tick.

`signals_connect()` (mercari_ops/celery.py) hooks Celery's signals; the worker's main process cleans the
folder of dead processes' files when it starts (worker_init), and a pool process that ends is marked dead.
Imported by mercari_ops/celery.py before Django is set up: nothing here touches settings at import.
"""

from __future__ import annotations

import logging
import os
import time

from celery import signals

from .process import process_dead, stale_files_remove

logger = logging.getLogger(__name__)

_started: dict[str, float] = {}  # task id -> perf_counter at prerun (one pool process: its own tasks only)


def _task_prerun(task_id=None, **kwargs) -> None:
    _started[task_id] = time.perf_counter()


def _task_postrun(task_id=None, task=None, **kwargs) -> None:
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        from .core import TASK_DURATION

        TASK_DURATION.labels(task.name).observe(time.perf_counter() - started)


def _task_failure(sender=None, **kwargs) -> None:
    from .core import TASK_FAILURES

    TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()


def _worker_init(**kwargs) -> None:
    removed = stale_files_remove()
    logger.info("metrics: removed %s files of ended processes", removed)


def _worker_process_init(**kwargs) -> None:
    """A pool process starts: its counters' known label values at 0 (registry.counters_initialise)."""
    from .registry import counters_initialise

    counters_initialise()


def _worker_process_shutdown(**kwargs) -> None:
    from .registry import metrics_flush

    metrics_flush()  # a pool process ends with os._exit (no atexit): its last counts are written now
    process_dead(os.getpid())


def signals_connect() -> None:
    signals.task_prerun.connect(_task_prerun, dispatch_uid="metrics.task_prerun", weak=False)
    signals.task_postrun.connect(_task_postrun, dispatch_uid="metrics.task_postrun", weak=False)
    signals.task_failure.connect(_task_failure, dispatch_uid="metrics.task_failure", weak=False)
    signals.worker_init.connect(_worker_init, dispatch_uid="metrics.worker_init", weak=False)
    signals.beat_init.connect(_worker_init, dispatch_uid="metrics.beat_init", weak=False)
    signals.worker_process_init.connect(_worker_process_init, dispatch_uid="metrics.process_init", weak=False)
    signals.worker_process_shutdown.connect(_worker_process_shutdown, dispatch_uid="metrics.process_shutdown",
                                            weak=False)
