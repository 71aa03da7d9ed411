"""Freeze what a long-lived process has loaded out of the cyclic garbage collector's sight.

A full collection walks every tracked object, and a process with Django loaded holds a few hundred
thousand of them that live as long as the process. Each such walk is a pause of tens of milliseconds
in whatever the process was doing (a paced LINE send, a request). `gc.freeze()` moves them to a
permanent generation the collector no longer visits. Measured per process kind in docs/benchmarks.md:
it helps senders, the sandbox and sync read workers, and it slowed the threaded ingestion pool.
"""

import gc
import threading

_frozen = threading.Event()


def loaded_objects_freeze() -> None:
    """Collect once, then freeze everything alive now. Once per process; later calls do nothing."""
    if not _frozen.is_set():
        _frozen.set()
        gc.collect()
        gc.freeze()
