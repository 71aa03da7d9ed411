import json
import os
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    connection,
    transaction,
)
from django_celery_beat.models import PeriodicTask
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

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
    assert service_token_create(name="item-page") != key  # a new key each time: keys are shown once
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
    """Hold the named lock from another connection, like a second beat; returns the release."""
    s = connection.settings_dict
    conn = psycopg.connect(host=s["HOST"], port=s["PORT"], user=s["USER"], dbname=s["NAME"], autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", [lock_key(name)])

    def release() -> None:
        # unlocked when this statement returns; closing alone frees it only once the server ends the session
        conn.execute("SELECT pg_advisory_unlock(%s)", [lock_key(name)])
        conn.close()

    return release


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
    "PUBSUB_OIDC_AUDIENCE": "https://ops.example.com/pubsub/push/loyalty-activity",
    "PUBSUB_OIDC_SERVICE_ACCOUNTS": "pubsub-push@mercari-ops.iam.gserviceaccount.com",
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


@pytest.mark.parametrize("allowed_hosts", [None, ""], ids=["unset", "empty"])
def test_production_refuses_to_start_without_allowed_hosts(allowed_hosts):
    env = dict(PRODUCTION)
    env.pop("ALLOWED_HOSTS")
    if allowed_hosts is not None:
        env["ALLOWED_HOSTS"] = allowed_hosts
    result = _manage("check", **env)
    assert result.returncode != 0
    assert "ALLOWED_HOSTS" in result.stderr


DEAD_DATABASE_PROBE = """
import json, django
django.setup()
from django.test import Client
client = Client()
health = client.get("/healthz")
api = client.get("/api/whoami", HTTP_AUTHORIZATION="Token any-key")
from conftest import push_body
from django.conf import settings
from mercari_ops.common.tests.wsgi_client import wsgi_call
push = wsgi_call("/pubsub/push/platform-ping", method="POST", body=push_body({"event_id": "dead-db-1"}),
                 headers={"Authorization": "Bearer " + settings.PUBSUB_PUSH_TOKEN})
print(json.dumps({"health": [health.status_code, health.json()], "api": [api.status_code, api.json()],
                  "push": [push[0], json.loads(push[2])]}))
"""


def test_healthz_and_api_are_503_when_the_database_is_unreachable():
    # given: a web process whose database server is not there (nothing listens on port 1)
    dead = "postgres://postgres@127.0.0.1:1/mops_dead"
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "ALLOWED_HOSTS", "DEBUG")}
    env.update(DATABASE_URL=dead, DJANGO_SETTINGS_MODULE="mercari_ops.settings")
    # when
    result = subprocess.run([sys.executable, "-c", DEAD_DATABASE_PROBE], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    # then: 503 (callers retry), the broker is still reported as fine, the API answers {"error", "field"}
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout.strip().splitlines()[-1])
    assert answers["health"] == [503, {"status": "unavailable", "database": False, "broker": True}]
    assert answers["api"] == [503, {"error": "database unavailable, retry later", "field": None}]
    assert answers["push"] == answers["api"]  # through the real WSGI entry point's machine stack


def test_ensure_admin_prints_the_password_once():
    from django.contrib.auth import get_user_model

    first, second = StringIO(), StringIO()
    call_command("ensure_admin", "--username", "boss", stdout=first)
    password = re.search(r"Admin user created: boss / (\S+)", first.getvalue()).group(1)
    user = get_user_model().objects.get(username="boss")
    assert user.is_superuser and user.check_password(password)

    call_command("ensure_admin", "--username", "boss", stdout=second)
    assert password not in second.getvalue()
    assert "already exists" in second.getvalue()
    user.refresh_from_db()
    assert user.check_password(password)  # the second run did not reset it


def test_create_service_token_prints_the_key_alone_and_rotate_replaces_it(client):
    def command(*args) -> str:
        out = StringIO()
        call_command("create_service_token", *args, stdout=out, stderr=StringIO())
        return out.getvalue().strip()

    def whoami(key):
        return client.get("/api/whoami", HTTP_AUTHORIZATION=f"Token {key}")

    old = command("billing", "--scopes", "campaigns_write")
    assert whoami(old).json() == {"service": "billing"}

    new = command("billing", "--rotate")

    assert new != old
    assert whoami(old).status_code == 401
    assert (whoami(new).status_code, whoami(new).json()) == (200, {"service": "billing"})


def _database_error(statements: list[str]):
    """Run SQL that the real database rejects; return the exception Django raised."""
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
    return caught.value


def test_unique_conflict_is_409_naming_the_field():
    from django.contrib.auth import get_user_model

    get_user_model().objects.create(username="twice")
    with pytest.raises(IntegrityError) as caught, transaction.atomic():
        get_user_model().objects.create(username="twice")
    response = api_exception_handler(caught.value, {})
    assert response.status_code == 409
    assert response.data == {"error": "a record with the same username already exists", "field": "username"}


def test_missing_required_value_is_400_naming_the_field():
    error = _database_error(["INSERT INTO auth_group (name) VALUES (NULL)"])
    assert isinstance(error, IntegrityError)
    response = api_exception_handler(error, {})
    assert (response.status_code, response.data) == (400, {"error": "name is required", "field": "name"})


def test_value_the_column_cannot_hold_is_400():
    error = _database_error([f"INSERT INTO auth_group (name) VALUES ('{'x' * 200}')"])
    assert isinstance(error, DataError)
    response = api_exception_handler(error, {})
    assert response.status_code == 400
    assert response.data == {"error": "value too long for type character varying(150)", "field": None}


def test_database_outage_is_still_503():
    error = _database_error(["SET LOCAL statement_timeout = 1", "SELECT pg_sleep(1)"])  # query cancelled
    assert isinstance(error, OperationalError)
    for exc in (error, InterfaceError("connection already closed")):
        response = api_exception_handler(exc, {})
        assert (response.status_code, response.data) == (503, {"error": "database unavailable, retry later",
                                                               "field": None})


class _CreateGroupApi(APIView):
    authentication_classes: list = []
    permission_classes: list = []

    def post(self, request):
        return Response({"id": Group.objects.create(name=request.data["name"]).pk}, status=201)


def test_api_view_answers_409_to_a_duplicate_instead_of_503():
    view = _CreateGroupApi.as_view()
    assert view(APIRequestFactory().post("/x", {"name": "team"}, format="json")).status_code == 201
    response = view(APIRequestFactory().post("/x", {"name": "team"}, format="json"))
    assert (response.status_code, response.data) == (409, {"error": "a record with the same name already exists",
                                                           "field": "name"})


def test_postgres_sessions_run_without_jit():
    """DB_SESSION_OPTIONS (default "-c jit=off") reaches the server: no JIT compile of OLTP statements."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW jit")
        assert cursor.fetchone()[0] == "off"
