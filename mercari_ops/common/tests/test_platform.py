import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask
from rest_framework.exceptions import ValidationError

from mercari_ops.common.errors import api_exception_handler
from mercari_ops.common.locks import lock_key, try_named_lock
from mercari_ops.common.periodic import PERIODIC_TASKS, periodic_tasks_sync
from mercari_ops.common.services import service_token_create

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_broker(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "broker": True}


def test_healthz_is_503_when_broker_is_unreachable(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"] is False


def test_service_token_authenticates_and_bad_token_is_401(client):
    key = service_token_create(name="item-page")
    assert service_token_create(name="item-page") == key  # stable unless rotated
    assert client.get("/api/whoami", HTTP_AUTHORIZATION=f"Token {key}").json() == {"service": "item-page"}
    bad = client.get("/api/whoami", HTTP_AUTHORIZATION="Token nope")
    assert bad.status_code == 401
    assert set(bad.json()) == {"error", "field"}
    assert service_token_create(name="item-page", rotate=True) != key


def test_exception_handler_names_the_nested_field():
    response = api_exception_handler(ValidationError({"items": [{}, {"amount": ["A valid integer is required."]}]}),
                                     {})
    assert response.status_code == 400
    assert response.data == {"error": "A valid integer is required.", "field": "items.1.amount"}


def test_openapi_schema_is_served(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert b"/api/whoami" in response.content


def test_periodic_tasks_are_synced_and_operator_pause_is_kept():
    assert "inbox.process_due" in PERIODIC_TASKS
    PeriodicTask.objects.filter(name="inbox.process_due").update(enabled=False)
    periodic_tasks_sync()
    task = PeriodicTask.objects.get(name="inbox.process_due")
    assert task.enabled is False and task.interval.every == 10
    assert set(PERIODIC_TASKS) <= set(PeriodicTask.objects.values_list("name", flat=True))


def test_groups_exist_with_permissions():
    from django.contrib.auth.models import Group

    operators = Group.objects.get(name="operators")
    assert operators.permissions.filter(codename="change_inboxevent").exists()
    marketers = Group.objects.get(name="marketers")
    assert not marketers.permissions.filter(content_type__app_label="inbox").exists()


def _hold_lock_elsewhere(name: str):
    """Hold the named lock from another connection (pg) or open file (sqlite), like a second beat."""
    if connection.vendor == "postgresql":
        s = connection.settings_dict
        conn = psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True)
        conn.execute("SELECT pg_advisory_lock(%s)", [lock_key(name)])
        return conn.close
    import fcntl
    import hashlib

    from django.conf import settings

    handle = open(settings.VAR_DIR / "locks" / f"{hashlib.sha1(name.encode()).hexdigest()}.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle.close


@pytest.mark.django_db(transaction=True)
def test_periodic_body_is_skipped_while_another_run_holds_the_lock():
    from mercari_ops.inbox.tasks import inbox_process_due

    with try_named_lock("warmup"):
        pass
    release = _hold_lock_elsewhere("periodic:inbox.process_due")
    try:
        assert inbox_process_due() == {"skipped": "locked"}
    finally:
        release()
    assert inbox_process_due() == {}


def _manage(*args, **env):
    full = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "ALLOWED_HOSTS")}
    full.update(env)
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True)


PRODUCTION = {
    "DEBUG": "0",
    "DJANGO_SECRET_KEY": "k" * 20 + "production-secret-with-enough-entropy-1234567890",
    "ALLOWED_HOSTS": "ops.example.com",
    "PUBSUB_PUSH_TOKEN": "p",
    "BRAZE_WEBHOOK_TOKEN": "b",
    "LINE_CHANNEL_ACCESS_TOKEN": "l",
    "LINE_CHANNEL_SECRET": "s",
}


def test_production_check_deploy_is_clean():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues" in result.stdout


def test_production_refuses_to_start_without_secret_key():
    env = dict(PRODUCTION)
    env.pop("DJANGO_SECRET_KEY")
    result = _manage("check", **env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_every_variable_settings_reads_is_documented_in_env_example():
    import re

    source = (ROOT / "mercari_ops" / "settings.py").read_text()
    read = set(re.findall(r"""\b(?:env|Env\(\))\.\w+\(\s*["']([A-Z][A-Z0-9_]+)["']""", source))
    example = (ROOT / ".env.example").read_text().splitlines()
    documented = {}
    for previous, current in zip(["", *example], example, strict=False):
        name = current.split("=", 1)[0]
        if "=" in current and not current.startswith("#"):
            documented[name] = previous.startswith("# ")
    assert {"DB_CONN_HEALTH_CHECKS", "DB_SERVER_SIDE_BINDING", "DATABASE_URL", "VAR_DIR"} <= read
    assert sorted(read - set(documented)) == []
    assert sorted(name for name, commented in documented.items() if not commented) == []
