"""Beat's tick, for mercari_ops_celery_beat_last_tick_timestamp_seconds (the Procfile's --scheduler).

Written by beat itself, not by a task it sends: the gauge says whether beat runs, whatever the workers do
(their queues have their own gauge).
"""

from __future__ import annotations

import logging
import time

from django_celery_beat.schedulers import DatabaseScheduler

from .platform import beat_tick_record

logger = logging.getLogger(__name__)


class TickingScheduler(DatabaseScheduler):
    """django-celery-beat's scheduler that writes the time of each tick to Redis (at most once a second)."""

    _last_recorded = 0.0

    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        now = time.time()
        if now - self._last_recorded >= 1:
            try:
                beat_tick_record(now)
                self._last_recorded = now
            except Exception as exc:  # Redis down: beat goes on; the stale tick is the alert
                logger.warning("metrics: beat tick not recorded: %r", exc)
        return interval
