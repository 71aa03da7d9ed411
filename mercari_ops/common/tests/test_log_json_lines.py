"""LOG_FORMAT=json gives JSON lines only, from every writer of a live gunicorn (its access and error lines, our
lines, django.request's), none naming a customer or LINE ID; the dead-letter line names its topic and event;
counters with known label values are exposed at 0 before their first increment (issue 20)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from conftest import push_body
from mercari_ops.common.logging import JsonFormatter, PlainFormatter, log_safe_customer, path_scrub, text_scrub
from mercari_ops.common.metrics import counters_initialise
from mercari_ops.common.metrics.registry import exposition
from mercari_ops.common.tests.test_prometheus_live import _free_port, _http, _wait_until

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
CUSTOMER = "c-00042"
LINE_USER = "U" + "4f" * 16
PUSH_TOKEN = "json-lines-push-token"


def test_text_scrub_hashes_customer_paths_drops_queries_and_masks_line_ids():
    text = f"Forbidden: /api/history/customers/{CUSTOMER}/payments?q={LINE_USER} by {CUSTOMER}"
    scrubbed = text_scrub(text)
    assert CUSTOMER not in scrubbed and LINE_USER not in scrubbed and "?q=" not in scrubbed
    assert scrubbed == (f"Forbidden: /api/history/customers/{log_safe_customer(CUSTOMER)}/payments by "
                        f"{log_safe_customer(CUSTOMER)}")
    assert text_scrub(scrubbed) == scrubbed  # a hash is not hashed again
    assert path_scrub("/admin/loyalty/customer/add/?q=x") == "/admin/loyalty/customer/add/"
    assert text_scrub("why? ok, event ev-1 for abc-123") == "why? ok, event ev-1 for abc-123"


def test_both_formatters_scrub_a_django_request_line_and_gunicorns_access_line():
    forbidden = logging.LogRecord("django.request", logging.WARNING, __file__, 1, "Forbidden: %s",
                                  (f"/api/history/customers/{CUSTOMER}/payments",), None)
    access = logging.LogRecord("gunicorn.access", logging.INFO, __file__, 1, '%(h)s "%(r)s" %(s)s', (
        {"h": "10.0.0.9", "r": f"GET /api/loyalty/customers/{CUSTOMER}?q={LINE_USER} HTTP/1.1", "s": "403",
         "m": "GET", "U": f"/api/loyalty/customers/{CUSTOMER}", "q": f"q={LINE_USER}", "M": 7,
         "a": "curl", "{x-request-id}o": "req-access-1"},), None)
    for formatter in (PlainFormatter(), JsonFormatter()):
        for record in (forbidden, access):
            line = formatter.format(record)
            assert CUSTOMER not in line and LINE_USER not in line and "10.0.0.9" not in line, line
    entry = json.loads(JsonFormatter().format(access))
    assert entry["path"] == f"/api/loyalty/customers/{log_safe_customer(CUSTOMER)}"
    assert (entry["method"], entry["status"], entry["duration_ms"], entry["request_id"]) == (
        "GET", 403, 7, "req-access-1")


def test_counters_with_known_label_values_are_exposed_at_zero_before_their_first_increment():
    counters_initialise()
    text = exposition().decode()
    for kind in ("push", "multicast", "audience", "other"):
        assert re.search(rf'^mercari_ops_line_rate_limited_total\{{kind="{kind}"\}} ', text, re.MULTILINE), kind
    assert re.search(r'^mercari_ops_inbox_dead_letters_received_total\{topic="loyalty-activity"\} ', text,
                     re.MULTILINE)
    assert re.search(r'^mercari_ops_inbox_events_total\{outcome="dead",topic="loyalty-activity"\} ', text,
                     re.MULTILINE)


class LiveGunicorn:
    """gunicorn as the Procfile runs it (its config, `--access-logfile -`), with LOG_FORMAT=json; `stop()`
    ends it (SIGTERM: its shutdown lines are written) and returns every non-empty line of stdout and stderr."""

    def __init__(self, tmp_path: Path):
        base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
        port = _free_port()
        (tmp_path / "metrics").mkdir()
        env = {
            **os.environ, "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}", "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "DEBUG": "0",
            "DJANGO_SECRET_KEY": "json-lines-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0", "PUBSUB_AUTH": "token", "PUBSUB_PUSH_TOKEN": PUSH_TOKEN,
            "BRAZE_WEBHOOK_TOKEN": "json-lines-braze", "LINE_CHANNEL_ACCESS_TOKEN": "json-lines-line",
            "LINE_CHANNEL_SECRET": "json-lines-secret", "POINTS_API_URL": "",
        }
        self.url = f"http://127.0.0.1:{port}"
        self._out, self._err = tmp_path / "stdout", tmp_path / "stderr"
        with self._out.open("wb") as stdout, self._err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "mercari_ops.wsgi", "--config", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{port}", "--workers", "1", "--threads", "2", "--access-logfile", "-",
                 "--log-level", "info"],
                cwd=ROOT, env=env, stdout=stdout, stderr=stderr)

    def stop(self) -> list[str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return [line for path in (self._out, self._err) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def gunicorn_json(transactional_db, tmp_path):
    live = LiveGunicorn(tmp_path)
    try:
        _wait_until(lambda: _http(f"{live.url}/livez")[0] == 200, what="gunicorn answering",
                    processes=[live.process])
        yield live
    finally:
        live.stop()


def test_live_gunicorn_in_json_mode_writes_only_json_lines_without_personal_ids(gunicorn_json):
    # given a live gunicorn with LOG_FORMAT=json
    url = gunicorn_json.url
    # when a request under a customer's path is refused (no credentials), with a LINE ID in its query string
    status, _ = _http(f"{url}/api/history/customers/{CUSTOMER}/payments?q={LINE_USER}",
                      headers={"X-Request-ID": "req-json-403"})
    assert status in (401, 403)
    # and a push is refused and kept as a dead letter
    bad = {"event_id": "ev-json-dead-1", "customer_id": CUSTOMER, "kind": "no-such-kind", "amount": "x"}
    status, _ = _http(f"{url}/pubsub/push/loyalty-activity", data=push_body(bad),
                      headers={"Authorization": f"Bearer {PUSH_TOKEN}", "Content-Type": "application/json",
                               "X-Request-ID": "req-json-dead"})
    assert status == 400

    # then (gunicorn stopped, its lines flushed) every line of stdout and stderr is one JSON object
    lines = gunicorn_json.stop()
    entries = [json.loads(line) for line in lines]  # raises on a plain-text line
    assert entries and all(isinstance(e, dict) and "level" in e and "logger" in e for e in entries)
    # and none names the customer or the LINE user, or keeps a query string
    assert not [line for line in lines if CUSTOMER in line or LINE_USER in line or "?q=" in line]
    # gunicorn's access lines are ours: scrubbed path, status, duration and the request's ID
    access = {e["request_id"]: e for e in entries if e["logger"] == "gunicorn.access"}
    assert access["req-json-403"]["path"] == f"/api/history/customers/{log_safe_customer(CUSTOMER)}/payments"
    assert access["req-json-403"]["status"] in (401, 403) and access["req-json-403"]["method"] == "GET"
    assert access["req-json-dead"]["status"] == 400 and isinstance(access["req-json-dead"]["duration_ms"], int)
    # django.request's refusal line says which request without the customer
    refused = [e for e in entries if e["logger"] == "django.request" and e["request_id"] == "req-json-403"]
    assert refused and all(CUSTOMER not in e["message"] for e in refused)
    # the dead letter's WARNING names its topic and event, once
    dead = [e for e in entries if e["request_id"] == "req-json-dead" and e["level"] == "WARNING"]
    assert [(e["logger"], e["topic"], e["event_id"]) for e in dead] == [
        ("mercari_ops.inbox.push", "loyalty-activity", "ev-json-dead-1")]
    # gunicorn's own lines (booting, shutting down) are JSON too
    assert any(e["logger"] == "gunicorn.error" for e in entries)
