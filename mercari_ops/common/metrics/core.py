"""Counters and histograms of the core machinery (group commit, Celery tasks); no model imports here, so the
modules that count (mercari_ops/common/groupcommit.py, workers.py) can import it at their top."""

from .registry import counter, histogram

GROUP_COMMIT_SIZE = histogram("mercari_ops_group_commit_size_events",
                              "Items committed in one group-commit transaction", ["committer"],
                              buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, float("inf")))
TASK_DURATION = histogram("mercari_ops_celery_task_duration_seconds", "Celery task run time", ["task"],
                          buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 10, 30, 60, 120, 300, float("inf")))
TASK_FAILURES = counter("mercari_ops_celery_task_failures_total", "Celery tasks that raised", ["task"])
