"""Shared test helpers: Pub/Sub push bodies, a token-authenticated API client, test topics."""

import base64
import json
import uuid

import pytest
from django.conf import settings
from rest_framework.test import APIClient


def push_body(event, message_id: str | None = None) -> bytes:
    data = event if isinstance(event, (bytes, str)) else json.dumps(event)
    data = data.encode() if isinstance(data, str) else data
    return json.dumps({
        "message": {"data": base64.b64encode(data).decode(), "messageId": message_id or uuid.uuid4().hex,
                    "publishTime": "2026-11-01T10:00:00.123Z"},
        "subscription": "projects/p/subscriptions/s",
    }).encode()


@pytest.fixture
def client():
    """Django's test client as an English browser: behaviour tests read English; test_i18n and the browser tests
    check the Japanese default."""
    from django.test import Client

    return Client(HTTP_ACCEPT_LANGUAGE="en")


@pytest.fixture
def japanese_client(db):
    """A superuser's browser that sends no Accept-Language: the admin's default, Japanese."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    client = Client()
    client.force_login(get_user_model().objects.create_superuser("op", "", "pw-123456789"))
    return client


@pytest.fixture
def admin_client(db, admin_user, client):
    """pytest-django's admin_client on the English test client above."""
    client.force_login(admin_user)
    return client


@pytest.fixture(autouse=True)
def _inbox_push_without_group_commit(settings):
    """Pushes run in the test's own transaction; group commit has its own transactional tests."""
    settings.GROUP_COMMIT = False


@pytest.fixture
def eager_celery():
    """Tasks queued with .delay() run inline (with django_capture_on_commit_callbacks(execute=True) for
    those queued after commit), so their effect can be asserted in the test."""
    from mercari_ops.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


@pytest.fixture
def push(client):
    """push(topic, event) -> response, through the real endpoint with the configured token."""

    def _push(topic, event=None, *, body=None, token=None):
        return client.post(
            f"/pubsub/push/{topic}",
            data=body if body is not None else push_body(event),
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token or settings.PUBSUB_PUSH_TOKEN}",
        )

    return _push


@pytest.fixture(autouse=True)
def _force_login_passes_the_second_factor(monkeypatch):
    """A test user logged in with force_login (admin_client too) has a confirmed TOTP device and a session
    verified with it, as after a real admin login; the second factor stays on (mercari_ops/common/otp_admin.py,
    tested through the login form in mercari_ops/common/tests/test_admin_logins.py)."""
    from django.test import Client

    original = Client.force_login

    def force_login(self, user, backend=None):
        from django_otp import DEVICE_ID_SESSION_KEY
        from django_otp.plugins.otp_totp.models import TOTPDevice

        original(self, user, backend)
        device = TOTPDevice.objects.filter(user=user, confirmed=True).first() \
            or TOTPDevice.objects.create(user=user, name="tests", confirmed=True)
        session = self.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()

    monkeypatch.setattr(Client, "force_login", force_login)


@pytest.fixture
def api_client(db):
    from mercari_ops.common.services import service_token_create

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {service_token_create(name='tests')}")
    return api


@pytest.fixture
def test_topic():
    """Register a temporary topic; yields (name, calls, register) where register swaps the handler."""
    from mercari_ops.common.schema import Int, Schema, Str
    from mercari_ops.inbox.registry import register_topic, unregister_topic

    name = f"test-{uuid.uuid4().hex[:8]}"
    calls: list[dict] = []
    schema = Schema({"event_id": Str(), "n": Int(required=False), "occurred_at": Str(required=False)})

    def register(handle=None, **kwargs):
        def default(event):
            calls.append(event)

        return register_topic(name, schema=schema, handle=handle or default, **kwargs)

    register()
    yield name, calls, register
    unregister_topic(name)
