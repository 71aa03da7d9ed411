import os

from celery import Celery

from mercari_ops.common.metrics.workers import signals_connect as metrics_signals_connect

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")

app = Celery("mercari_ops")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Metrics (mercari_ops/common/metrics/workers.py): task run times and failures, the multiprocess folder cleaned
# when a worker or beat starts.
metrics_signals_connect()
