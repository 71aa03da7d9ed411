import os

from celery import Celery
from celery.signals import setup_logging

from mercari_ops.common.logging import celery_signals_connect, logging_configure
from mercari_ops.common.metrics.workers import signals_connect as metrics_signals_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")

app = Celery("mercari_ops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Metrics (mercari_ops/common/metrics/workers.py): task run times and failures, the multiprocess folder cleaned
# when a worker or beat starts.
metrics_signals_connect()


# Logs and request IDs (mercari_ops/common/logging.py): the request ID rides with each task message and the
# worker's lines carry it and the task ID.
celery_signals_connect()


@setup_logging.connect(weak=False)
def _logging_from_settings(**kwargs):
    """Worker and beat log as the web does (settings.LOGGING: LOG_FORMAT, UTC, request IDs), not Celery's way."""
    from django.conf import settings

    logging_configure(settings.LOGGING)
