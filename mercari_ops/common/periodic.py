"""Periodic tasks are declared in code and synced into django-celery-beat.

    @periodic_task(name="inbox.retry_due", every=timedelta(seconds=10))
    def inbox_retry_due(): ...

The body runs under a named lock (a PostgreSQL advisory lock), so an overlapping
run or a second beat returns at once instead of running it twice. After
`migrate`, `periodic_tasks_sync` writes each declaration into beat's tables so
operators see, pause and run them from the admin; an operator's "enabled"
choice is kept on later syncs.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import translation

from .locks import try_named_lock

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    every: timedelta | None
    crontab: dict | None
    description: str
    queue: str | None


PERIODIC_TASKS: dict[str, PeriodicSpec] = {}


def periodic_task(
    *,
    name: str,
    every: timedelta | None = None,
    crontab: dict | None = None,
    description: str = "",
    queue: str | None = None,
    **task_options,
):
    if (every is None) == (crontab is None):
        raise ValueError("give exactly one of every= or crontab=")

    def decorator(fn):
        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with try_named_lock(f"periodic:{name}") as acquired:
                if not acquired:
                    logger.info("periodic task %s skipped: another run holds its lock", name)
                    return {"skipped": "locked"}
                return fn(*args, **kwargs)

        options = dict(task_options)
        if queue:
            options["queue"] = queue
        task = shared_task(name=name, **options)(locked)
        PERIODIC_TASKS[name] = PeriodicSpec(name, every, crontab, description or (fn.__doc__ or "").strip(), queue)
        return task

    return decorator


def periodic_tasks_sync() -> int:
    """Create or update beat rows for every declared periodic task. Returns the count."""
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    for spec in PERIODIC_TASKS.values():
        # The row keeps the English text (a declared description may be translatable: the admin shows it in the
        # reader's language from the declaration, beat_admin.periodic_task_description).
        with translation.override("en"):
            description = str(spec.description)[:200]
        defaults = {"task": spec.name, "description": description, "interval": None, "crontab": None}
        if spec.every is not None:
            defaults["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=int(spec.every.total_seconds()), period=IntervalSchedule.SECONDS
            )
        else:
            cron = {"minute": "*", "hour": "*", "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}
            cron.update({k: str(v) for k, v in spec.crontab.items()})
            # Crontabs are business times: "nightly" is Japan's midnight, not UTC's.
            defaults["crontab"], _ = CrontabSchedule.objects.get_or_create(timezone=settings.BUSINESS_TIME_ZONE,
                                                                           **cron)
        if spec.queue:
            defaults["queue"] = spec.queue
        PeriodicTask.objects.update_or_create(name=spec.name, defaults=defaults)
    return len(PERIODIC_TASKS)
