"""gunicorn's hooks for the metrics' multiprocess folder (mercari_ops/common/metrics/process.py), and with
LOG_FORMAT=json its own log lines (access and error) as our JSON lines.

Loaded by the Procfile's `--config`; settings stay on the command line. process.py and logging.py are loaded
by their paths (both import only the standard library): importing the `mercari_ops` package here would load
Celery and Django into the master before it forks.
"""

import importlib.util
import os
from pathlib import Path

_BASE = Path(__file__).resolve().parent


def _load(name: str, relative: str):
    spec = importlib.util.spec_from_file_location(name, _BASE / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_process = _load("mercari_ops_metrics_process", "mercari_ops/common/metrics/process.py")


def _log_format() -> str:
    """LOG_FORMAT as settings.py reads it: the environment first, then the project's .env."""
    if "LOG_FORMAT" in os.environ:
        return os.environ["LOG_FORMAT"]
    env_file = _BASE / ".env"
    if env_file.exists():
        for line in env_file.read_text().splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and name.strip() == "LOG_FORMAT":
                return value.split("#", 1)[0].strip().strip("'\"")
    return "plain"


if _log_format() == "json":
    # One JSON object per line from gunicorn too: the access line through our formatter (method, path without
    # query string and with customer IDs hashed, status, duration, request_id; no client IP or user agent).
    _logging = _load("mercari_ops_logging_for_gunicorn", "mercari_ops/common/logging.py")
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": _logging.JsonFormatter}},
        "handlers": {
            "access": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
            "error": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
        },
        "loggers": {
            "gunicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
            "gunicorn.error": {"handlers": ["error"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["error"], "level": "INFO"},
    }


def on_starting(server):
    """Before the workers fork: the folder exists, is exported to them, and holds no dead process's files."""
    _process.multiproc_dir()
    _process.stale_files_remove()


def post_worker_init(worker):
    """The app is loaded in this worker: its counters' known label values exposed at 0."""
    from mercari_ops.common.metrics import counters_initialise

    counters_initialise()


def child_exit(server, worker):
    _process.process_dead(worker.pid)
