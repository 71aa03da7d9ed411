"""Service tokens: stored hashed and shown once, scopes per API, revocation on every process at once,
rotation with a grace period, last use recorded cheaply, the admin screens and their audit."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.views import APIView

from mercari_ops.common.models import AuditLogEntry, ServiceToken
from mercari_ops.common.services import service_token_create, service_token_revoke
from mercari_ops.common.tests.test_schema_contract_live import BIN, ROOT, _free_port, _server_env
from mercari_ops.common.tokens import SCOPES, EpochReader, EpochWatcher, TokenCache, epoch_bump, token_cache

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _patient_epoch_reader(settings, monkeypatch):
    """A loaded test machine may hold Redis longer than production's 0.25 s: these tests are about the cache,
    not that timeout (a Redis that does not answer has its own tests)."""
    settings.API_TOKEN_EPOCH_TIMEOUT_SECONDS = 5.0
    watcher = EpochWatcher(EpochReader())
    monkeypatch.setattr(token_cache, "epochs", watcher)
    yield
    watcher._close()


class CountingReader(EpochReader):
    """The real GET, counted: how many round trips to Redis the watcher made."""

    gets = 0

    def read(self):
        self.gets += 1
        return super().read()


def auth(key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Token {key}"}


# --- storage ------------------------------------------------------------------------------------------


def test_the_key_is_stored_as_a_hash_only(db):
    # when
    key = service_token_create(name="item-page", scopes=["estimate"])
    # then: a prefix to find it and a sha256 to prove it; the raw key is in no column and no audit entry
    token = ServiceToken.objects.get(service="item-page")
    assert (token.prefix, token.key_hash) == (key[:8], hashlib.sha256(key.encode()).hexdigest())
    assert len(key) >= 40 and token.scopes == ["estimate"]
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(t)::text FROM common_servicetoken t")
        rows = [r[0] for r in cursor.fetchall()]
        cursor.execute("SELECT row_to_json(a)::text FROM common_auditlogentry a")
        rows += [r[0] for r in cursor.fetchall()]
    assert rows and not [r for r in rows if key in r]
    assert AuditLogEntry.objects.get(action="token.create").after["scopes"] == ["estimate"]


def test_unknown_scope_is_refused_naming_it(db):
    with pytest.raises(CommandError, match="unknown scope 'payouts'"):
        call_command("create_service_token", "x", "--scopes", "estimate,payouts", stdout=StringIO())
    with pytest.raises(CommandError, match="--scopes is required"):
        call_command("create_service_token", "x", stdout=StringIO())
    assert not ServiceToken.objects.exists()


# --- scopes -------------------------------------------------------------------------------------------


# The schema and the pages that read it are public (no token): drf-spectacular's views and our subclasses of them.
_PUBLIC_PAGES = (SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView)


def _api_views():
    def walk(patterns):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns)
            elif isinstance(p, URLPattern):
                view_class = getattr(p.callback, "view_class", None) or getattr(p.callback, "cls", None)
                if view_class and issubclass(view_class, APIView) and str(p.pattern).startswith("api/") \
                        and not issubclass(view_class, _PUBLIC_PAGES):
                    yield str(p.pattern), view_class

    return list(walk(get_resolver().url_patterns))


def test_every_api_view_declares_a_known_scope():
    views = _api_views()
    assert len(views) >= 9
    for pattern, view in views:
        assert getattr(view, "required_scope", None) in (*SCOPES, "*"), pattern


@pytest.mark.parametrize(("method", "url", "body", "scope"), [
    ("post", "/api/campaigns/estimate", {"customer_id": "c-1", "amount": 100, "channel": "mercari"}, "estimate"),
    ("get", "/api/history/customers/c-1/payments", None, "history_read"),
    ("get", "/api/history/payments/p-1", None, "history_read"),
    ("post", "/api/history/payments/p-1/repay", None, "repay"),
    ("post", "/api/campaigns", {"name": "x"}, "campaigns_write"),
    ("get", "/api/loyalty/customers/c-1", None, "history_read"),
    ("post", "/api/line/unlink", {"customer_id": "c-1"}, "line_linking"),
])
def test_a_token_without_the_scope_gets_403_naming_it(db, client, method, url, body, scope):
    # given a token with every scope but this one
    key = service_token_create(name="narrow", scopes=[s for s in SCOPES if s != scope])
    # when
    response = getattr(client, method)(url, data=json.dumps(body) if body else None,
                                       content_type="application/json", **auth(key))
    # then
    assert response.status_code == 403, response.content
    assert response.json() == {"error": f"this token lacks the scope {scope!r}", "field": "Authorization"}


def test_whoami_answers_any_valid_token(db, client):
    key = service_token_create(name="probe", scopes=["line_linking"])
    assert client.get("/api/whoami", **auth(key)).json() == {"service": "probe"}


# --- revocation, rotation, expiry ----------------------------------------------------------------------


def test_revoked_token_is_refused_on_the_next_request_in_this_process(db, client):
    key = service_token_create(name="item-page", scopes=["estimate"])
    assert client.get("/api/whoami", **auth(key)).status_code == 200  # now cached
    service_token_revoke(token=ServiceToken.objects.get(service="item-page"), by="olga")
    response = client.get("/api/whoami", **auth(key))
    assert (response.status_code, response.json()["error"]) == (401, "Invalid token.")
    entry = AuditLogEntry.objects.get(action="token.revoke")
    assert (entry.actor, entry.after["revoked_at"] is not None) == ("olga", True)


def test_rotation_keeps_the_old_key_for_the_grace_period(db):
    # given
    old = service_token_create(name="billing", scopes=["repay", "history_read"], now=T0)
    assert token_cache.check(old, now=T0)[0].username == "svc-billing"
    # when rotated with an hour's grace
    new = service_token_create(name="billing", rotate=True, grace_seconds=3600, now=T0)
    # then the old key works to the end of the hour, the new one (same scopes) from now on
    assert token_cache.check(old, now=T0 + timedelta(seconds=3599))[1].service == "billing"
    with pytest.raises(AuthenticationFailed, match="expired"):
        token_cache.check(old, now=T0 + timedelta(seconds=3600))
    assert token_cache.check(new, now=T0 + timedelta(days=30))[1].scopes == {"repay", "history_read"}
    rotation = AuditLogEntry.objects.get(action="token.rotate")
    assert rotation.after["expires_at"].startswith("2026-12-01T10:00:00")


def test_rotate_command_with_grace(db, client):
    out = StringIO()
    call_command("create_service_token", "billing", "--scopes", "repay", stdout=out, stderr=StringIO())
    old = out.getvalue().strip()
    out = StringIO()
    call_command("create_service_token", "billing", "--rotate", "--grace", "600", stdout=out, stderr=StringIO())
    new = out.getvalue().strip()
    assert new != old
    assert client.get("/api/whoami", **auth(old)).status_code == 200  # within the grace period
    expiry = ServiceToken.objects.get(prefix=old[:8]).expires_at
    assert timedelta(seconds=590) < expiry - datetime.now(UTC) <= timedelta(seconds=600)
    assert ServiceToken.objects.get(prefix=new[:8]).scopes == ["repay"]


def test_last_use_is_written_at_most_once_a_minute(db):
    key = service_token_create(name="item-page", scopes=["estimate"])
    token_cache.check(key, now=T0)
    token_cache.check(key, now=T0 + timedelta(seconds=59))
    assert ServiceToken.objects.get(service="item-page").last_used_at == T0
    token_cache.check(key, now=T0 + timedelta(seconds=61))
    assert ServiceToken.objects.get(service="item-page").last_used_at == T0 + timedelta(seconds=61)


def test_a_cached_token_costs_no_query(db):
    key = service_token_create(name="item-page", scopes=["estimate"])
    token_cache.check(key)
    with CaptureQueriesContext(connection) as queries:
        for _ in range(5):
            token_cache.check(key)
    assert queries.captured_queries == []


def test_a_cached_token_costs_no_round_trip_to_redis_until_an_epoch_is_published(db):
    # given a process subscribed to the epoch
    reader = CountingReader()
    cache = TokenCache(EpochWatcher(reader))
    key = service_token_create(name="item-page", scopes=["estimate"])
    try:
        for _ in range(50):
            cache.check(key)
        # then the epoch was read once, when the process subscribed
        assert reader.gets == 1
        # when another process revokes the token (the epoch is written and published)
        ServiceToken.objects.filter(service="item-page").update(revoked_at=T0)
        assert epoch_bump()
        # then this process reads the new epoch once and refuses the token on its next request
        with pytest.raises(AuthenticationFailed):
            cache.check(key)
        assert reader.gets == 2
    finally:
        cache.epochs._close()


def test_a_lost_subscription_falls_back_to_a_get_per_request(db):
    reader = CountingReader()
    watcher = EpochWatcher(reader)
    key = service_token_create(name="item-page", scopes=["estimate"])
    cache = TokenCache(watcher)
    cache.check(key)
    # when Redis drops the subscription connection
    watcher._sock.shutdown(2)
    cache.check(key)
    # then the request read the epoch itself, and the next one subscribes again
    assert reader.gets == 2 and watcher._sock is None
    cache.check(key)
    assert watcher._sock is not None
    watcher._close()


def test_redis_unreachable_falls_back_to_the_database(db):
    # given a process whose Redis does not answer
    cache = TokenCache(EpochWatcher(EpochReader("redis://127.0.0.1:1/0", timeout=0.2)))
    key = service_token_create(name="item-page", scopes=["estimate"])
    assert cache.check(key)[1].service == "item-page"
    # when the token is revoked without any epoch reaching this process
    ServiceToken.objects.filter(service="item-page").update(revoked_at=T0)
    # then the database decides on the next request (no cache while Redis is away)
    with pytest.raises(AuthenticationFailed):
        cache.check(key)


def test_api_answers_401_not_500_when_redis_is_down(db, client, settings, monkeypatch):
    key = service_token_create(name="item-page", scopes=["estimate"])
    monkeypatch.setattr(token_cache, "epochs", EpochReader("redis://127.0.0.1:1/0", timeout=0.2))
    assert client.get("/api/whoami", **auth(key)).status_code == 200
    assert client.get("/api/whoami", **auth("x" * 43)).status_code == 401


# --- two processes ------------------------------------------------------------------------------------


@pytest.fixture
def other_process(transactional_db):
    """gunicorn on this test's database and Redis: another process with its own token cache (kept an hour)."""
    port = _free_port()
    server = subprocess.Popen(
        [str(BIN / "gunicorn"), "mercari_ops.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1",
         "--threads", "2", "--log-level", "warning"],
        cwd=ROOT, env=_server_env(API_TOKEN_CACHE_SECONDS="3600", API_TOKEN_EPOCH_TIMEOUT_SECONDS="5"))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _whoami(base: str, key: str, *, wait: float = 0) -> int:
    deadline = time.monotonic() + wait
    while True:
        request = urllib.request.Request(f"{base}/api/whoami", headers={"Authorization": f"Token {key}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code
        except (ConnectionError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)  # gunicorn starting: polling for its socket, not waiting on our code


def test_revocation_reaches_another_process_on_its_next_request(other_process):
    # given a token the other process has cached (for an hour)
    key = service_token_create(name="item-page", scopes=["estimate"])
    assert _whoami(other_process, key, wait=60) == 200
    # a change the epoch does not announce stays unseen there: the cache is really in use
    ServiceToken.objects.filter(service="item-page").update(revoked_at=T0)
    assert _whoami(other_process, key) == 200
    ServiceToken.objects.filter(service="item-page").update(revoked_at=None)
    # when revoked through the service (in this process)
    service_token_revoke(token=ServiceToken.objects.get(service="item-page"), by="olga")
    # then the other process refuses it on its very next request
    assert _whoami(other_process, key) == 401


def test_epoch_bump_clears_this_process(db):
    key = service_token_create(name="item-page", scopes=["estimate"])
    token_cache.check(key)
    ServiceToken.objects.filter(service="item-page").update(revoked_at=T0)
    assert token_cache.check(key)[1].service == "item-page"  # cached
    assert epoch_bump() is True
    with pytest.raises(AuthenticationFailed):
        token_cache.check(key)


# --- admin --------------------------------------------------------------------------------------------


@pytest.fixture
def operator_client(client, db):
    from django.contrib.auth.models import Group

    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("olga", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client


def test_admin_creates_a_token_and_shows_the_key_once(operator_client):
    # when
    response = operator_client.post("/admin/common/servicetoken/add/", {
        "service": "item-page", "scopes": ["estimate", "history_read"], "grace_seconds": "0"})
    # then the answer shows the key, stored nowhere else
    assert response.status_code == 200, response.content[:2000]
    token = ServiceToken.objects.get(service="item-page")
    page = response.content.decode()
    start = page.index('id="service-token-key"')
    key = page[page.index(">", start) + 1:page.index("</code>", start)]
    assert token.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert "no-store" in response["Cache-Control"]
    assert key not in operator_client.get(f"/admin/common/servicetoken/{token.pk}/change/").content.decode()
    listing = operator_client.get("/admin/common/servicetoken/").content.decode()
    assert token.prefix in listing and key not in listing
    entry = AuditLogEntry.objects.get(action="token.create")
    assert (entry.actor, entry.actor_ip) == ("olga", "127.0.0.1")


def test_admin_refuses_a_service_name_with_spaces_and_has_no_drf_token_screen(operator_client):
    response = operator_client.post("/admin/common/servicetoken/add/", {"service": "item page",
                                                                        "scopes": ["estimate"]})
    assert response.status_code == 200 and "One word" in response.content.decode()
    assert not ServiceToken.objects.exists()
    assert operator_client.get("/admin/authtoken/tokenproxy/").status_code == 404


def test_admin_revoke_action_is_audited(operator_client):
    key = service_token_create(name="item-page", scopes=["estimate"])
    token = ServiceToken.objects.get(service="item-page")
    response = operator_client.post("/admin/common/servicetoken/", {"action": "revoke",
                                                                    "_selected_action": [token.pk]})
    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.revoked_by, token.revoked_at is not None) == ("olga", True)
    assert AuditLogEntry.objects.get(action="token.revoke").actor == "olga"
    with pytest.raises(AuthenticationFailed):
        token_cache.check(key)


def test_marketers_cannot_see_tokens(client, db):
    from django.contrib.auth.models import Group

    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("mika", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="marketers"))
    client.force_login(user)
    assert client.get("/admin/common/servicetoken/").status_code == 403
    assert client.get("/admin/common/servicetoken/add/").status_code == 403


def test_migration_module_hashes_existing_drf_tokens():
    # the data step in 0004: the same hash the check computes, so existing callers keep their keys
    import importlib

    module = importlib.import_module("mercari_ops.common.migrations.0004_service_tokens")
    assert module.SCOPES == list(SCOPES)
