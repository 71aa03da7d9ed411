"""Process tuning for LINE senders, applied once when a process that runs the sender starts.

A sender paces its calls on an even schedule (`services.pacing._Pacer`): a slot its thread does not use
within a few milliseconds is lost for good. Two things of the interpreter made threads miss their slots:

- the GIL switch interval: a thread woken for its slot waits for the GIL up to the interval (5 ms by
  default), so a sender process lowers it to LINE_SENDER_SWITCH_INTERVAL;
- the cyclic garbage collector: batches of 1,000 messages trigger full collections, and walking all of
  Django paused every sending thread for 50-130 ms, so a sender process freezes what it loaded at
  start-up out of the collector's sight (`loaded_objects_freeze`).

Both are settings of the whole process, so they belong to its start-up, not to a service call:
`sender_process_tune` runs in every Celery worker process that consumes the `line` queue (connected to
`worker_process_init` in `apps.py`) and at the start of `manage.py line_send` (benchmarks, tests, a
sender in the foreground).
"""

from __future__ import annotations

import sys

from celery import current_app
from django.conf import settings

from mercari_ops.common.gcfreeze import loaded_objects_freeze

LINE_QUEUE = "line"  # the queue of the line.* tasks (CELERY_TASK_ROUTES), the sender's among them


def sender_process_tune() -> None:
    """Lower the GIL switch interval and freeze the loaded objects (see the module docstring). Idempotent."""
    if sys.getswitchinterval() > settings.LINE_SENDER_SWITCH_INTERVAL:
        sys.setswitchinterval(settings.LINE_SENDER_SWITCH_INTERVAL)
    loaded_objects_freeze()


def worker_process_tune(sender=None, **kwargs) -> None:
    """`worker_process_init` receiver: tune a worker process that may run the sender (it consumes `line`)."""
    if LINE_QUEUE in current_app.amqp.queues.consume_from:  # the worker's --queues, or every queue without it
        sender_process_tune()
