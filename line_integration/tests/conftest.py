"""LINE test fixtures: the sandbox as a real HTTP server on a manual clock, signed webhook bodies, linked
customers, the sender run to the end without waiting for its retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings as django_settings
from django.db.models import Max
from django.db.models.functions import Greatest
from django.utils import timezone

from line_integration import spec
from line_integration.sandbox import SandboxThread
from mercari_ops.common.tests.clock import ManualClock

LIMITER_KEYS = ("line:push", "line:multicast", "line:audience", "line:richmenu", "line:sender")


def line_user_id(customer_id: str) -> str:
    return "U" + hashlib.md5(customer_id.encode()).hexdigest()


@pytest.fixture(scope="session")
def line_sandbox_server():
    """One sandbox per test session (a thread on a free loopback port)."""
    return SandboxThread(access_token=django_settings.LINE_CHANNEL_ACCESS_TOKEN, audience_job_seconds=1.0).start()


@pytest.fixture
def line_sandbox(line_sandbox_server, settings):
    """A freshly reset sandbox; settings.LINE_API_BASE points at it, limiter keys are cleared.

    Its time is a manual clock of the test's, starting now (`line_sandbox.sandbox.clock`, also the `clock`
    fixture): audience jobs finish, rate limits refill and arrivals are stamped when the test moves it.
    """
    from mercari_ops.common.ratelimit import rate_limiter

    line_sandbox_server.sandbox.clock = ManualClock(start=time.time())
    line_sandbox_server.control("reset", {})
    line_sandbox_server.sandbox.audience_job_seconds = 1.0
    settings.LINE_API_BASE = line_sandbox_server.url
    settings.LINE_SEND_RETRY_BASE_SECONDS = 0.02
    settings.LINE_READ_TIMEOUT = 2.0
    settings.ENRICH_URL = line_sandbox_server.url + "/__enrich"
    for key in LIMITER_KEYS:
        rate_limiter().reset(key)
    from line_integration.services.templates import template_names_clear

    template_names_clear()
    yield line_sandbox_server
    for key in LIMITER_KEYS:
        rate_limiter().reset(key)


def webhook_body(*events: dict, destination: str = "U" + "f" * 32) -> bytes:
    body = {"destination": destination, "events": list(events)}
    assert spec.errors("webhook", "CallbackRequest", body) == [], spec.errors("webhook", "CallbackRequest", body)
    return json.dumps(body).encode()


def signature(body: bytes, secret: str | None = None) -> str:
    digest = hmac.new((secret or django_settings.LINE_CHANNEL_SECRET).encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def event(kind: str, user: str, *, mode: str = "active", event_id: str | None = None, **extra) -> dict:
    base = {"type": kind, "mode": mode, "timestamp": 1_790_000_000_000, "source": {"type": "user", "userId": user},
            "webhookEventId": event_id or uuid.uuid4().hex[:26].upper(),
            "deliveryContext": {"isRedelivery": False}}
    if kind in ("follow", "accountLink"):
        base["replyToken"] = uuid.uuid4().hex
    if kind == "follow":
        base["follow"] = {"isUnblocked": False}
    base.update(extra)
    return base


@pytest.fixture
def post_webhook(client):
    def _post(body: bytes, sig: str | None = None):
        return client.post("/line/webhook", data=body, content_type="application/json",
                           HTTP_X_LINE_SIGNATURE=sig if sig is not None else signature(body))

    return _post


@pytest.fixture
def link_customers():
    """link_customers(["c-1", ...]) -> {customer_id: line_user_id}; linked directly, no greeting."""
    from django.db import transaction

    from line_integration.services.linking import link_complete

    def _link(customer_ids):
        linked = {}
        with transaction.atomic():
            for customer_id in customer_ids:
                link_complete(customer_id=customer_id, line_user_id=line_user_id(customer_id), after=[],
                              send_greeting=False)
                linked[customer_id] = line_user_id(customer_id)
        return linked

    return _link


@pytest.fixture
def braze(client):
    def _post(body, token: str | None = None):
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return client.post("/line/braze/webhook", data=data, content_type="application/json",
                           HTTP_AUTHORIZATION=f"Bearer {token or django_settings.BRAZE_WEBHOOK_TOKEN}")

    return _post


@pytest.fixture
def text_template(db):
    from line_integration.services import template_save

    return template_save(name="saved_search_new_items",
                         messages=[{"type": "text", "text": "New items for your search {search_id}"}])


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def clock(line_sandbox, monkeypatch) -> ManualClock:
    """The test's one clock: the sandbox's, and `timezone.now()` (the due times and leases the sender keeps
    in the database). It moves only when the test (or code pacing on it) moves it."""
    clock = line_sandbox.sandbox.clock
    monkeypatch.setattr(timezone, "now", lambda: EPOCH + timedelta(microseconds=clock.us))
    return clock


@pytest.fixture
def paced_on_clock(clock, monkeypatch, settings) -> ManualClock:
    """The sender paces on `clock` (its pacers and their limiter), with one sending thread: its sleeps move
    the clock to each slot, so the sandbox stamps every arrival at its slot's time, whatever the machine's load."""
    from line_integration.services import pacing

    settings.LINE_SEND_THREADS = 1
    monkeypatch.setattr(pacing, "_pacers", pacing._Pacers(clock=clock))
    return clock


@pytest.fixture
def drain(clock):
    """drain(): run the sender until no message is left queued or planned. Between runs, `clock` moves to the
    moment every pending request may be claimed (retries due, a dead sender's leases expired), not a wait."""
    from line_integration.models import LineRequest, OutboundMessage
    from line_integration.services import sender_run

    def _drain(rounds: int = 100) -> None:
        for _ in range(rounds):
            if not OutboundMessage.objects.filter(status__in=["queued", "planned"]).exists():
                return
            sender_run(seconds=5)
            # claimable when next_attempt_at <= now and (claimed_until IS NULL or claimed_until < now)
            claimable = LineRequest.objects.filter(status=LineRequest.Status.PENDING).aggregate(
                at=Max(Greatest("next_attempt_at", "claimed_until")))["at"]
            if claimable is not None:
                clock.set_us(max(clock.us, (claimable - EPOCH) // timedelta(microseconds=1) + 1))
        raise AssertionError(f"messages left undelivered after {rounds} sender runs")

    return _drain
