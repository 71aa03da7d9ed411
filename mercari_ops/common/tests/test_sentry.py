"""Sentry: off without SENTRY_DSN, on with it (settings start it), and what leaves the process is scrubbed."""

from __future__ import annotations

import os
import subprocess
import sys

import sentry_sdk
from django.conf import settings

from mercari_ops.common.sentry import FILTERED, before_send, sentry_init

CUSTOMER = "cust-5be1-sentry"
LINE_USER = "U" + "4f" * 16


def _event() -> dict:
    """An event as sentry-sdk's Django integration builds it for a failing Braze webhook."""
    return {
        "transaction": "/line/braze/webhook",
        "request": {
            "url": f"http://testserver/api/loyalty/customers/{CUSTOMER}",
            "method": "POST",
            "query_string": f"customer_id={CUSTOMER}",
            "data": {"user_id": CUSTOMER, "params": {"to": LINE_USER}},
            "cookies": {"sessionid": "s3cr3t"},
            "headers": {"Authorization": "Bearer braze-token", "X-Line-Signature": "c2ln", "Cookie": "sessionid=s3cr3t",
                        "Content-Type": "application/json", "X-Request-ID": "req-1"},
            "env": {"REMOTE_ADDR": "10.0.0.1"},
        },
        "user": {"id": 7, "email": "op@example.com", "ip_address": "10.0.0.1"},
        "exception": {"values": [{
            "type": "LineServerError",
            "value": f"POST /v2/bot/user/{LINE_USER}/linkToken: 500",
            "stacktrace": {"frames": [{"function": "link", "vars": {"customer_id": CUSTOMER, "body": "{...}"}}]},
        }]},
        "logentry": {"message": "line_notify failed for %s", "params": [CUSTOMER]},
        "extra": {"customer_id": CUSTOMER, "count": 3, "note": f"user {LINE_USER}"},
        "tags": {"topic": "payment-events", "line_user_id": LINE_USER},
        "breadcrumbs": {"values": [{"category": "query", "message": "SELECT 1", "data": {"params": [CUSTOMER]}},
                                   {"category": "log", "message": f"sent to {LINE_USER}"}]},
        "spans": [{"op": "http.client", "description": f"POST /v2/bot/user/{LINE_USER}/linkToken",
                   "data": {"url": f"http://line/v2/bot/user/{LINE_USER}/linkToken", "customer_id": CUSTOMER}}],
    }


def test_before_send_removes_bodies_secrets_and_personal_ids():
    scrubbed = before_send(_event(), {})
    text = repr(scrubbed)
    for secret in (CUSTOMER, LINE_USER, "braze-token", "c2ln", "s3cr3t", "op@example.com", "10.0.0.1"):
        assert secret not in text, secret
    assert scrubbed["request"] == {"method": "POST", "url": "/line/braze/webhook",
                                   "headers": {"Content-Type": "application/json", "X-Request-ID": "req-1"}}
    assert "user" not in scrubbed
    # what is not personal stays, so the event is still useful
    assert scrubbed["exception"]["values"][0]["value"] == "POST /v2/bot/user/<line-id>/linkToken: 500"
    assert scrubbed["exception"]["values"][0]["stacktrace"]["frames"] == [{"function": "link"}]
    assert scrubbed["logentry"] == {"message": "line_notify failed for %s", "params": [FILTERED]}
    assert scrubbed["extra"] == {"customer_id": FILTERED, "count": 3, "note": "user <line-id>"}
    assert scrubbed["tags"] == {"topic": "payment-events", "line_user_id": FILTERED}
    assert scrubbed["spans"] == [{"op": "http.client", "description": "POST /v2/bot/user/<line-id>/linkToken",
                                  "data": FILTERED}]


def test_before_send_leaves_the_input_event_alone():
    event = _event()
    before_send(event, {})
    assert event == _event()


def test_no_dsn_no_sentry():
    assert sentry_init(dsn="") is False
    assert not sentry_sdk.get_client().is_active()


def test_a_dsn_starts_sentry_without_personal_data_and_with_the_scrubber():
    try:
        assert sentry_init(dsn="http://public@127.0.0.1:9/1", environment="test") is True
        client = sentry_sdk.get_client()
        assert client.is_active()
        assert (client.options["send_default_pii"], client.options["include_local_variables"]) == (False, False)
        assert client.options["before_send"] is before_send
        assert {"django", "celery"} <= set(client.integrations)
    finally:
        sentry_sdk.get_client().close(timeout=0)
        sentry_sdk.get_global_scope().set_client(None)
    assert not sentry_sdk.get_client().is_active()


def _settings_started_sentry(**env: str) -> str:
    code = ("import django, sentry_sdk; django.setup(); "
            "client = sentry_sdk.get_client(); "
            "print(client.is_active(), client.options.get('environment') if client.is_active() else '-')")
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "mercari_ops.settings", "SENTRY_DSN": "", **env}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=environ, cwd=settings.BASE_DIR)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_settings_start_sentry_only_when_sentry_dsn_is_set():
    assert _settings_started_sentry() == "False -"
    assert _settings_started_sentry(SENTRY_DSN="http://public@127.0.0.1:9/1",
                                    SENTRY_ENVIRONMENT="staging") == "True staging"
