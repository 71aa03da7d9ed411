"""A real Prometheus (Debian's /usr/bin/prometheus) scrapes the live web, whose /metrics includes the Celery
worker's counters (one machine, one PROMETHEUS_MULTIPROC_DIR), and beat records its ticks; after a Pub/Sub
push, a Braze burst and a settlement run by the worker, the expected series move in Prometheus' own answers
(its HTTP API, polled until a deadline: never a fixed sleep).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from conftest import push_body

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
TOKEN = "live-metrics-token"
PUSH_TOKEN, BRAZE_TOKEN = "live-push-token", "live-braze-token"

pytestmark = pytest.mark.skipif(not Path(PROMETHEUS).exists(), reason="Debian's prometheus is not installed")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until(check, *, what: str, seconds: float = 90.0, processes=()):
    """Poll `check()` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        for process in processes:
            assert process.poll() is None, f"{process.args[0]} exited ({process.returncode}) waiting for {what}"
        try:
            last = check()
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what}: not seen within {seconds:.0f} s (last: {last!r})")


def _http(url: str, *, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def stack(transactional_db, tmp_path):
    """gunicorn (2 workers), a Celery worker and beat on this test's database, sharing one metrics folder."""
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    web_port = _free_port()
    env = {
        **os.environ, "DATABASE_URL": f"{base}/{connection.settings_dict['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "METRICS_TOKEN": TOKEN,
        "DEBUG": "0", "DJANGO_SECRET_KEY": "live-metrics-" + "x" * 50, "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "0", "PUBSUB_AUTH": "token", "PUBSUB_PUSH_TOKEN": PUSH_TOKEN,
        "BRAZE_WEBHOOK_TOKEN": BRAZE_TOKEN, "LINE_CHANNEL_ACCESS_TOKEN": "live-line",
        "LINE_CHANNEL_SECRET": "live-line-secret", "LOG_LEVEL": "WARNING", "POINTS_API_URL": "",
    }
    (tmp_path / "metrics").mkdir()
    web = subprocess.Popen(
        [str(BIN / "gunicorn"), "mercari_ops.wsgi", "--config", "gunicorn.conf.py", "--bind", f"127.0.0.1:{web_port}",
         "--workers", "2", "--threads", "4", "--log-level", "warning"], cwd=ROOT, env=env)
    worker = subprocess.Popen(
        [str(BIN / "celery"), "-A", "mercari_ops", "worker", "--queues", "events,line,settlement,default",
         "--pool", "solo", "--loglevel", "WARNING", "--without-heartbeat", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env)
    beat = subprocess.Popen(
        [str(BIN / "celery"), "-A", "mercari_ops", "beat", "--loglevel", "WARNING", "--scheduler",
         "mercari_ops.common.metrics.beat:TickingScheduler", "--pidfile", str(tmp_path / "beat.pid")],
        cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{web_port}"
    try:
        _wait_until(lambda: _http(f"{url}/livez")[0] == 200, what="gunicorn answering /livez", processes=[web])
        yield {"url": url, "port": web_port, "processes": [web, worker, beat]}
    finally:
        for process in (beat, worker, web):
            process.terminate()
        for process in (beat, worker, web):
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def prometheus(stack, tmp_path):
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # JSON is YAML
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{
            "job_name": "mercari_ops", "metrics_path": "/metrics",
            "authorization": {"type": "Bearer", "credentials": TOKEN},
            "static_configs": [{"targets": [f"127.0.0.1:{stack['port']}"]}],
        }],
    }))
    server = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    api = f"http://127.0.0.1:{port}"
    try:
        _wait_until(lambda: _http(f"{api}/-/ready")[0] == 200, what="prometheus ready", processes=[server])
        yield {"api": api, "processes": [server, *stack["processes"]]}
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def query(api: str, promql: str) -> float | None:
    """The value of an instant query that yields one series (or a sum); None when it yields nothing."""
    status, body = _http(f"{api}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    answer = json.loads(body)
    assert status == 200 and answer["status"] == "success", answer
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _settlement_data() -> dict:
    """What a settlement needs (committed: the live processes read it): a customer with a card, the
    merchant master, an active campaign for October 2026; returns a card-bill-settled event for her."""
    from campaigns.models import Campaign
    from campaigns.services import campaign_create, card_status_record_many, merchant_master_import_csv
    from campaigns.tests.conftest import INNER_RATES, MERCHANT_CSV, NOV_START, OCT_START
    from campaigns.tests.factories import bill_event, line
    from loyalty.models import Customer

    Customer.objects.create(customer_id="live-1", stage=10, rules_stage=10)
    card_status_record_many(events=[{"event_id": "live-cs-1", "customer_id": "live-1", "mercard_status": 2,
                                     "changed_at": "2026-09-01T00:00:00Z"}])
    merchant_master_import_csv(text=MERCHANT_CSV)
    campaign_create(name="Live", starts_at=OCT_START, ends_at=NOV_START, rates=INNER_RATES,
                    user_filters={"mercard_status": [2, 3]}, payment_filters={"mercari_inner_payment": True},
                    upper_limit=None, status=Campaign.Status.ACTIVE, by="test")
    return bill_event("live-1", [line("live-p-1", 3000), line("live-p-2", 7000)])


def test_prometheus_sees_a_push_a_braze_burst_and_a_settlement_move(stack, prometheus):
    from line_integration.services import template_save

    api, url, processes = prometheus["api"], stack["url"], prometheus["processes"]
    template_save(name="saved_search_new_items", messages=[{"type": "text", "text": "New items {search_id}"}])
    bill = _settlement_data()
    # given: Prometheus scrapes the web with the token, and nothing was counted yet
    _wait_until(lambda: query(api, 'up{job="mercari_ops"}') == 1, what="a successful scrape", processes=processes)
    assert query(api, "mercari_ops_database_up") == 1
    assert not query(api, 'sum(mercari_ops_inbox_events_total{topic="platform-ping"})')
    assert query(api, 'mercari_ops_campaigns_bills{status="settled"}') == 0

    # when: a Pub/Sub push, a burst of 20 Braze webhooks, and a bill whose settlement the worker runs
    auth = {"Content-Type": "application/json", "Authorization": f"Bearer {PUSH_TOKEN}"}
    status, _ = _http(f"{url}/pubsub/push/platform-ping", data=push_body({"event_id": "live-ping-1"}), headers=auth)
    assert status == 204
    for n in range(20):
        body = json.dumps({"user_id": f"live-c-{n}", "dispatch_id": "live-burst", "template": "saved_search_new_items",
                           "params": {"search_id": "s"}}).encode()
        status, answer = _http(f"{url}/line/braze/webhook", data=body,
                               headers={"Content-Type": "application/json", "Authorization": f"Bearer {BRAZE_TOKEN}"})
        assert status == 202, answer
    status, _ = _http(f"{url}/pubsub/push/card-bill-settled", data=push_body(bill), headers=auth)
    assert status == 204

    # then: each series moves in Prometheus
    expected = {
        'sum(mercari_ops_inbox_events_total{topic="platform-ping",outcome="processed"})': 1,
        'sum(mercari_ops_inbox_push_duration_seconds_count{topic="card-bill-settled"})': 1,
        "sum(mercari_ops_line_braze_webhooks_total)": 20,  # skipped: nobody linked, each answered
        "sum(mercari_ops_group_commit_size_events_count)": 1,
        'mercari_ops_campaigns_bills{status="settled"}': 1,
        'mercari_ops_campaigns_grants{status="delivered"}': 1,
        # counted in the worker's process, served by the web's /metrics
        "sum(mercari_ops_campaigns_points_granted_total)": 100,  # 1.0% of 10,000 yen at stage 10
        'sum(mercari_ops_celery_task_duration_seconds_count{task="campaigns.settle_bills"})': 1,
    }
    started = time.time()
    expected["mercari_ops_celery_beat_last_tick_timestamp_seconds"] = started - 60  # beat ticks (its own record)
    for promql, at_least in expected.items():
        seen = _wait_until(lambda q=promql, n=at_least: (query(api, q) or 0) >= n and query(api, q),
                           what=f"{promql} >= {at_least}", processes=processes)
        assert seen >= at_least
    assert query(api, "sum(mercari_ops_campaigns_points_granted_total)") == 100
    # the scrape itself stayed cheap at this size
    assert query(api, 'scrape_duration_seconds{job="mercari_ops"}') < 0.5
