"""/metrics (token, counters from every process, scrape gauges, snapshot), /livez and /readyz."""

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from conftest import push_body
from mercari_ops.common import views as common_views
from mercari_ops.common.metrics import ScrapeGauge, counter, scrape_area_register, snapshot
from mercari_ops.common.metrics.beat import TickingScheduler
from mercari_ops.common.metrics.platform import beat_tick_record
from mercari_ops.common.metrics.process import multiproc_dir, stale_files_remove
from mercari_ops.common.metrics.registry import _areas
from mercari_ops.common.tests.metrics_text import value
from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def scrape(client, settings):
    def _scrape() -> str:
        response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {settings.METRICS_TOKEN}")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("text/plain; version=0.0.4")
        return response.content.decode()

    return _scrape


def test_metrics_wants_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = "right-token"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer right-token").status_code == 200


def test_metrics_without_a_token_configured_refuses_everyone(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_a_push_moves_the_outcome_counter_and_the_latency_histogram(client, settings, scrape):
    before = scrape()
    # when: one new event and the same event again
    body = push_body({"event_id": "metrics-1"})
    for _ in range(2):
        response = client.post("/pubsub/push/platform-ping", data=body, content_type="application/json",
                               HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
        assert response.status_code == 204
    after = scrape()
    # then
    for outcome in ("processed", "duplicate"):
        key = {"topic": "platform-ping", "outcome": outcome}
        assert value(after, "mercari_ops_inbox_events_total", **key) == \
            value(before, "mercari_ops_inbox_events_total", **key) + 1
    count = "mercari_ops_inbox_push_duration_seconds_count"
    assert value(after, count, topic="platform-ping") == value(before, count, topic="platform-ping") + 2


def test_a_refused_body_counts_a_dead_letter_and_an_unknown_topic_is_one_label(client, settings, scrape):
    before = scrape()
    for topic in ("no-such-topic-1", "no-such-topic-2"):
        client.post(f"/pubsub/push/{topic}", data=push_body({"event_id": "x"}), content_type="application/json",
                    HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
    after = scrape()
    name = "mercari_ops_inbox_dead_letters_received_total"
    assert value(after, name, topic="unknown") == value(before, name, topic="unknown") + 2
    assert "no-such-topic" not in after


def test_scrape_gauges_show_backlogs_and_open_dead_letters(scrape):
    # given: two events waiting (one for longer than the alert time), one dead, one open dead letter
    now = timezone.now()
    for n, age in enumerate((10, 4000)):
        InboxEvent.objects.create(topic="platform-ping", event_id=f"w{n}", status=InboxEvent.Status.WAITING,
                                  waiting_on="parent", received_at=now - timedelta(seconds=age))
    InboxEvent.objects.create(topic="platform-ping", event_id="d", status=InboxEvent.Status.DEAD)
    DeadLetter.objects.create(topic="platform-ping", body_sha256="0" * 64, raw_body="{", error="bad")
    # when
    text = scrape()
    # then
    backlog = "mercari_ops_inbox_backlog_events"
    assert value(text, backlog, topic="platform-ping", status="waiting") == 2
    assert value(text, backlog, topic="platform-ping", status="dead") == 1
    assert value(text, backlog, topic="platform-ping", status="retry") == 0
    assert value(text, "mercari_ops_inbox_waiting_over_alert_events") == 1
    assert 4000 <= value(text, "mercari_ops_inbox_waiting_oldest_age_seconds") < 4100
    assert value(text, "mercari_ops_inbox_dead_letters_open", topic="platform-ping") == 1
    # and snapshot(), which the operations page shows, says the same
    assert snapshot()[backlog][("platform-ping", "waiting")] == 2


def test_platform_gauges_database_redis_and_queue_lengths(scrape, settings):
    from mercari_ops.common.metrics.platform import broker_client

    broker_client().delete("line")
    broker_client().rpush("line", "a", "b", "c")
    try:
        text = scrape()
    finally:
        broker_client().delete("line")
    assert value(text, "mercari_ops_database_up") == 1
    assert value(text, "mercari_ops_redis_up") == 1
    assert value(text, "mercari_ops_celery_queue_length", queue="line") == 3
    assert value(text, "mercari_ops_metrics_collector_up", area="inbox") == 1


def test_broker_down_is_a_gauge_not_a_failed_scrape(scrape, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    text = scrape()
    assert value(text, "mercari_ops_redis_up") == 0
    assert value(text, "mercari_ops_database_up") == 1


def test_an_area_that_fails_is_reported_and_the_others_still_answer(scrape):
    def broken():
        raise RuntimeError("boom")

    scrape_area_register("broken", [ScrapeGauge("mercari_ops_broken_things", "never read")], broken)
    try:
        text = scrape()
    finally:
        _areas.pop("broken")
    assert value(text, "mercari_ops_metrics_collector_up", area="broken") == 0
    assert "mercari_ops_broken_things" not in text
    assert value(text, "mercari_ops_database_up") == 1


def test_beat_tick_is_a_gauge(scrape):
    beat_tick_record(1_800_000_000.5)
    assert value(scrape(), "mercari_ops_celery_beat_last_tick_timestamp_seconds") == 1_800_000_000.5


@pytest.mark.django_db(transaction=True)  # the scheduler closes the connection between ticks
def test_the_beat_scheduler_records_its_tick():
    from mercari_ops.celery import app
    from mercari_ops.common.metrics.platform import BEAT_TICK_KEY, broker_client

    broker_client().delete(BEAT_TICK_KEY)
    scheduler = TickingScheduler(app=app)
    started = time.time()
    scheduler.tick()
    assert float(broker_client().get(BEAT_TICK_KEY)) >= started


def test_a_task_run_and_a_failure_are_counted(scrape, eager_celery):
    from celery import shared_task

    @shared_task(name="tests.metrics_ok")
    def ok():
        return 1

    @shared_task(name="tests.metrics_fails")
    def fails():
        raise ValueError("no")

    before = scrape()
    ok.delay()
    assert fails.apply().state == "FAILURE"  # (throw=True would raise before Celery reports the failure)
    after = scrape()
    duration = "mercari_ops_celery_task_duration_seconds_count"
    assert value(after, duration, task="tests.metrics_ok") == value(before, duration, task="tests.metrics_ok") + 1
    failures = "mercari_ops_celery_task_failures_total"
    assert value(after, failures, task="tests.metrics_fails") == value(before, failures,
                                                                      task="tests.metrics_fails") + 1


def test_counters_of_another_process_are_in_the_scrape(scrape):
    # given: a separate process (a Celery worker would be one) counts in the same folder
    script = ("import django; django.setup()\n"
              "from mercari_ops.common.metrics.core import TASK_FAILURES\n"
              "TASK_FAILURES.labels('tests.other_process').inc(3)\n")
    before = scrape()
    subprocess.run([sys.executable, "-c", script], check=True, env={**os.environ, "DJANGO_SETTINGS_MODULE":
                                                                  "mercari_ops.settings"}, timeout=60)
    after = scrape()
    name = "mercari_ops_celery_task_failures_total"
    assert value(after, name, task="tests.other_process") == value(before, name, task="tests.other_process") + 3


def test_metrics_disabled_counts_nothing(settings):
    settings.METRICS_ENABLED = False
    disabled = counter("mercari_ops_tests_disabled_total", "never registered")
    disabled.inc()
    disabled.labels().inc()  # a no-op, whatever is asked
    assert not list(multiproc_dir().glob("*disabled*"))


def test_counter_names_follow_the_conventions():
    with pytest.raises(ValueError):
        counter("mercari_ops_no_suffix", "a counter without _total")
    with pytest.raises(ValueError):
        counter("other_prefix_total", "not ours")


def test_stale_files_of_dead_processes_go_live_ones_stay(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"counter_{dead.pid}.db").write_bytes(b"x")
    (tmp_path / f"counter_{os.getpid()}.db").write_bytes(b"x")
    assert stale_files_remove(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"counter_{os.getpid()}.db"]


# --- probes -----------------------------------------------------------------------------------------------


def test_livez_answers_without_the_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/livez")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_broker_and_migrations(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broker": True, "migrations": True}


def test_readyz_is_503_while_a_migration_is_unapplied(client, monkeypatch):
    # given: the database forgets it applied the latest inbox migration (in this test's transaction only)
    monkeypatch.setattr(common_views, "_migrations_applied", False)
    recorder = MigrationRecorder(connection)
    latest = recorder.migration_qs.filter(app="inbox").order_by("-id").first()
    latest.delete()
    # when
    response = client.get("/readyz")
    # then
    assert response.status_code == 503
    assert response.json()["migrations"] is False
    assert client.get("/healthz").status_code == 503  # the alias says the same


def test_readyz_caches_the_migrations_check_once_true(client, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(common_views, "_migrations_applied", False)
    assert client.get("/readyz").status_code == 200
    with django_assert_max_num_queries(1):  # the database ping only
        assert client.get("/readyz").status_code == 200


def test_readyz_is_503_when_the_broker_is_down(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["broker"] is False


def test_metrics_serve_gives_this_machines_counters_to_a_scraper_with_the_token(settings, tmp_path):
    # given: a worker process counted a failure in the folder
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "METRICS_TOKEN": "serve-token"}
    subprocess.run([sys.executable, "-c", "import django; django.setup()\n"
                    "from mercari_ops.common.metrics.core import TASK_FAILURES\n"
                    "TASK_FAILURES.labels('tests.served').inc()\n"], check=True, env=env, timeout=60)
    server = subprocess.Popen([sys.executable, "manage.py", "metrics_serve", "--port", str(port), "--bind",
                               "127.0.0.1"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert "metrics of" in server.stdout.readline()  # listening
        url = f"http://127.0.0.1:{port}/metrics"
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 401
        request = urllib.request.Request(url, headers={"Authorization": "Bearer serve-token"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
    finally:
        server.terminate()
        server.wait(timeout=10)
    # then: the counter, and no scrape gauge (the web serves those)
    assert value(text, "mercari_ops_celery_task_failures_total", task="tests.served") == 1
    assert "mercari_ops_database_up" not in text


def test_gunicorn_hooks_clean_the_folder_at_start_and_mark_dead_workers(tmp_path, monkeypatch):
    import runpy
    from types import SimpleNamespace

    from mercari_ops.common.metrics.process import ENV_VARIABLE

    # given: the folder holds a dead process's counter and live-gauge files
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for kind in ("counter", "gauge_livesum"):
        (tmp_path / f"{kind}_{dead.pid}.db").write_bytes(b"x")
    monkeypatch.setenv(ENV_VARIABLE, str(tmp_path))
    hooks = runpy.run_path(str(Path(__file__).resolve().parents[3] / "gunicorn.conf.py"))
    # when: the master starts
    hooks["on_starting"](server=None)
    # then: nothing of the dead process is left
    assert list(tmp_path.iterdir()) == []
    # and a worker that exits has its live gauges removed (its counters stay until the next start)
    (tmp_path / "gauge_livesum_4242.db").write_bytes(b"x")
    (tmp_path / "counter_4242.db").write_bytes(b"x")
    hooks["child_exit"](server=None, worker=SimpleNamespace(pid=4242))
    assert [p.name for p in tmp_path.iterdir()] == ["counter_4242.db"]


def test_with_the_database_down_the_scrape_still_answers_and_says_so(tmp_path):
    # given: a web process whose database server is not there (nothing listens on port 1)
    env = {**os.environ, "DATABASE_URL": "postgres://postgres@127.0.0.1:1/mops_dead",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    script = ("import django; django.setup()\n"
              "from mercari_ops.common.metrics.registry import exposition\n"
              "print(exposition().decode())\n")
    # when
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # then
    assert done.returncode == 0, done.stderr[-3000:]
    assert value(done.stdout, "mercari_ops_database_up") == 0
    assert value(done.stdout, "mercari_ops_redis_up") == 1
    for area in ("inbox", "campaigns", "line", "loyalty", "history"):
        assert value(done.stdout, "mercari_ops_metrics_collector_up", area=area) == 0
    assert "the database was unreachable earlier in this scrape" in done.stderr  # one connect attempt, not six
    assert time.monotonic() - started < 30


# --- counting in memory, written by the flusher (registry._Deferred) -------------------------------------------

def _folder_value(name: str, **labels) -> float | None:
    """The value summed over this folder's files, as /metrics shows it, without flushing anything first."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(multiproc_dir()))
    return value(generate_latest(registry).decode(), name, **labels)


def test_counts_from_many_threads_all_land_and_histogram_buckets_are_prometheus_own():
    import threading
    import uuid

    from prometheus_client import Histogram

    from mercari_ops.common.metrics import histogram, metrics_flush

    tag = uuid.uuid4().hex[:8]
    hits = counter(f"mercari_ops_tests_deferred_{tag}_total", "test", ["kind"])
    latency = histogram(f"mercari_ops_tests_deferred_{tag}_seconds", "test", ["kind"])
    samples = [0.0005, 0.001, 0.0011, 0.003, 0.02, 0.5, 7.0, 11.0]

    def work():
        for n in range(1000):
            hits.labels("a").inc()
            latency.labels("a").observe(samples[n % len(samples)])

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    metrics_flush()
    assert _folder_value(f"mercari_ops_tests_deferred_{tag}_total", kind="a") == 8000
    # the same observations through prometheus-client's own Histogram.observe, in a registry of its own
    from prometheus_client import CollectorRegistry
    from prometheus_client.utils import floatToGoString

    from mercari_ops.common.metrics.registry import LATENCY_BUCKETS

    reference = Histogram(f"reference_{tag}", "reference", buckets=LATENCY_BUCKETS, registry=CollectorRegistry())
    for n in range(8000):
        reference.observe(samples[n % len(samples)])
    cumulative = 0
    for bound, bucket in zip(reference._upper_bounds, reference._buckets, strict=True):
        cumulative += bucket.get()
        assert _folder_value(f"mercari_ops_tests_deferred_{tag}_seconds_bucket", kind="a",
                             le=floatToGoString(bound)) == cumulative, bound
    assert _folder_value(f"mercari_ops_tests_deferred_{tag}_seconds_count", kind="a") == 8000
    assert _folder_value(f"mercari_ops_tests_deferred_{tag}_seconds_sum", kind="a") == pytest.approx(
        1000 * sum(samples))
    with pytest.raises(ValueError):
        hits.labels("a").inc(-1)


def test_the_flusher_thread_writes_counts_without_being_asked():
    import uuid

    from mercari_ops.common.metrics import registry

    name = f"mercari_ops_tests_flusher_{uuid.uuid4().hex[:8]}_total"
    counted = counter(name, "test")
    counted.inc(5)  # pending in memory; this test reads the folder without flushing
    # when: the flusher thread's next round (woken now instead of waiting its second)
    registry.flushed.clear()
    registry.flusher_wake.set()
    assert registry.flushed.wait(10)
    # then: the thread wrote the count, though no reader asked
    assert _folder_value(name) == 5


def test_a_forked_process_does_not_write_its_parents_pending_counts():
    import uuid

    from mercari_ops.common.metrics import metrics_flush

    name = f"mercari_ops_tests_fork_{uuid.uuid4().hex[:8]}_total"
    counted = counter(name, "test")
    metrics_flush()
    counted.inc(2)  # pending in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it would flush, then counts of its own
        try:
            pending = len(counted._own._pending)
            counted.inc(1)
            metrics_flush()
            os.write(write, str(pending).encode())
        finally:
            os._exit(0)
    os.close(write)
    pending_in_child = int(os.read(read, 16).decode())
    os.waitpid(pid, 0)
    metrics_flush()
    assert pending_in_child == 0
    assert _folder_value(name) == 3  # the parent's 2 once, the child's 1
