"""The multiprocess folder of prometheus-client: where it is, and cleaning it when a process group starts.

Every process (gunicorn workers, Celery workers, beat, manage.py) writes its counters and histograms to
mmap files `<kind>_<pid>.db` in one folder; /metrics sums the files of the folder. This module imports
neither Django nor prometheus_client, so gunicorn.conf.py and the embedded launcher can use it before either
is loaded: prometheus_client picks its multiprocess mode from the environment when it is first imported.

Cleaning removes the files of processes that are no longer alive, never those of a live process: the web,
the worker and beat start one after the other and share the folder, so the second to start must not erase
the first's counts. Counters of processes that ended are kept until the next start (their totals must not
go backwards while the rest keep running); a start resets them, which Prometheus' rate() reads as a reset.
Share one folder between processes of one machine (one PID namespace) only.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path

ENV_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_ROOT = Path(__file__).resolve().parents[3]
_PID_FILE = re.compile(r"_(\d+)\.db$")


def multiproc_dir() -> Path:
    """The folder, made if absent, and exported to this process's environment (children inherit it)."""
    configured = os.environ.get(ENV_VARIABLE)
    if not configured:
        var_dir = Path(os.environ.get("VAR_DIR") or _ROOT / "var")
        configured = os.environ[ENV_VARIABLE] = str(var_dir / "metrics")
    folder = Path(configured)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_files_remove(folder: Path | None = None) -> int:
    """Remove the files of processes that are not alive; the number removed."""
    folder = folder or multiproc_dir()
    removed = 0
    for path in folder.glob("*.db"):
        match = _PID_FILE.search(path.name)
        if match and not _alive(int(match.group(1))):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
    return removed


def process_dead(pid: int) -> None:
    """A worker process ended (gunicorn child_exit, Celery worker_process_shutdown): drop its live gauges."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, str(multiproc_dir()))
