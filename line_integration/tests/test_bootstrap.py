"""Sender processes are tuned at their start (Celery worker processes that consume `line`, `manage.py
line_send`), never by the sender itself. Process settings, so each case runs in a fresh interpreter."""

import gc
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from line_integration.services import sender_run

ROOT = Path(__file__).resolve().parents[2]

WORKER_PROCESS = """
import gc, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
import django
django.setup()
from celery.signals import worker_process_init
from mercari_ops.celery import app
app.amqp.queues.select(sys.argv[1].split(","))  # the worker's --queues
worker_process_init.send(sender="worker@test")  # what a worker's pool sends in each new process
print(json.dumps([sys.getswitchinterval(), gc.get_freeze_count()]))
"""

LINE_SEND = """
import gc, json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mercari_ops.settings")
import django
django.setup()
from django.core.management import call_command
call_command("line_send", seconds=0, stdout=open(os.devnull, "w"))
print(json.dumps([sys.getswitchinterval(), gc.get_freeze_count()]))
"""


def tuning_of(script: str, *args: str) -> tuple[float, int]:
    """(GIL switch interval, objects frozen out of the GC) of a fresh process after `script`."""
    out = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    interval, frozen = json.loads(out.stdout.strip().splitlines()[-1])
    return interval, frozen


@pytest.mark.parametrize("queues, tuned", [("events,line,settlement,default", True), ("line", True),
                                           ("events,settlement", False)])
def test_a_worker_process_is_tuned_at_start_when_it_consumes_the_line_queue(queues, tuned):
    interval, frozen = tuning_of(WORKER_PROCESS, queues)
    assert (interval == settings.LINE_SENDER_SWITCH_INTERVAL) is tuned
    assert (frozen > 0) is tuned


def test_line_send_tunes_its_process_at_start():
    interval, frozen = tuning_of(LINE_SEND)
    assert interval == settings.LINE_SENDER_SWITCH_INTERVAL
    assert frozen > 0


@pytest.mark.django_db
def test_the_sender_itself_leaves_the_process_settings_alone(line_sandbox):
    before = (sys.getswitchinterval(), gc.get_freeze_count())
    sender_run(seconds=1)
    assert (sys.getswitchinterval(), gc.get_freeze_count()) == before
