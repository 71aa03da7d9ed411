"""gunicorn's hooks for the metrics' multiprocess folder (mercari_ops/common/metrics/process.py).

Loaded by the Procfile's `--config`; settings stay on the command line. process.py is loaded by its path:
importing the `mercari_ops` package here would load Celery and Django into the master before it forks.
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "mercari_ops_metrics_process", Path(__file__).resolve().parent / "mercari_ops/common/metrics/process.py")
_process = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_process)


def on_starting(server):
    """Before the workers fork: the folder exists, is exported to them, and holds no dead process's files."""
    _process.multiproc_dir()
    _process.stale_files_remove()


def child_exit(server, worker):
    _process.process_dead(worker.pid)
