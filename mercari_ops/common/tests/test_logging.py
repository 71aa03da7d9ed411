"""Log formatters (UTC, JSON fields) and where the request ID comes from; no database."""

from __future__ import annotations

import json
import logging
import time

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from mercari_ops.common.logging import (
    JsonFormatter,
    PlainFormatter,
    RequestIdMiddleware,
    log_context,
    log_safe_customer,
    log_safe_error,
    request_id_from,
    request_id_var,
)

# 2026-12-05 12:34:56.789 UTC, i.e. 21:34:56 in Japan (the process time zone Django sets).
CREATED = 1796474096.789


def _record(msg: str = "hello %s", args=("world",), **extra) -> logging.LogRecord:
    record = logging.getLogger("tests.fmt").makeRecord("tests.fmt", logging.WARNING, __file__, 1, msg, args, None,
                                                       extra=extra or None)
    record.created = CREATED
    return record


def test_process_runs_in_japan_time_yet_both_formats_stamp_utc():
    assert time.strftime("%H", time.localtime(CREATED)) == "21"  # Django set TZ to TIME_ZONE (Asia/Tokyo)
    assert PlainFormatter().format(_record()).startswith("2026-12-05T12:34:56.789Z WARNING tests.fmt ")
    assert json.loads(JsonFormatter().format(_record()))["timestamp"] == "2026-12-05T12:34:56.789Z"


def test_json_line_has_the_fields_and_context():
    token = request_id_var.set("req-9")
    try:
        with log_context(topic="payment-events", event_id="ev-9"):
            record = _record()
    finally:
        request_id_var.reset(token)
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert json.loads(line) == {"timestamp": "2026-12-05T12:34:56.789Z", "level": "WARNING", "logger": "tests.fmt",
                                "message": "hello world", "request_id": "req-9", "topic": "payment-events",
                                "event_id": "ev-9"}
    assert "[request_id=req-9 topic=payment-events event_id=ev-9]" in PlainFormatter().format(record)


def test_exception_is_one_json_line_with_line_ids_masked():
    try:
        raise ValueError("no such user U" + "ab" * 16)
    except ValueError:
        record = logging.getLogger("t").makeRecord("t", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = __import__("sys").exc_info()
    entry = json.loads(JsonFormatter().format(record))
    assert "ValueError: no such user <line-id>" in entry["exception"] and "ab" * 16 not in entry["exception"]


def test_customer_ids_hash_stably_and_errors_hash_the_events_values():
    assert log_safe_customer("c-1") == log_safe_customer("c-1") != log_safe_customer("c-2")
    assert log_safe_customer("c-1").startswith("cust:") and len(log_safe_customer("c-1")) == 17
    error = log_safe_error(RuntimeError("Key (customer_id)=(c-12345) exists"),
                           {"event_id": "e", "customer_id": "c-12345"})
    assert error == f"RuntimeError: Key (customer_id)=({log_safe_customer('c-12345')}) exists"


@pytest.mark.parametrize(("meta", "expected"), [
    ({"HTTP_X_REQUEST_ID": "abc-123"}, "abc-123"),
    ({"HTTP_X_CLOUD_TRACE_CONTEXT": "105445aa7843bc8bf206b12000100000/1;o=1"}, "105445aa7843bc8bf206b12000100000"),
    ({"HTTP_X_REQUEST_ID": "a", "HTTP_X_CLOUD_TRACE_CONTEXT": "t/1"}, "a"),
])
def test_request_id_is_the_callers(meta, expected):
    assert request_id_from(meta) == expected


@pytest.mark.parametrize("meta", [{}, {"HTTP_X_REQUEST_ID": "two words\ninjected"}, {"HTTP_X_REQUEST_ID": "x" * 200}])
def test_request_id_is_made_when_absent_or_unsafe(meta):
    made = request_id_from(meta)
    assert len(made) == 16 and int(made, 16) >= 0 and made != request_id_from(meta)


@pytest.mark.django_db  # closing the answer sends request_finished, whose receivers touch the connection
def test_middleware_answers_the_id_and_logs_under_it(caplog):
    def view(request):
        logging.getLogger("tests.view").warning("inside")
        return HttpResponse()

    with caplog.at_level(logging.WARNING):
        response = RequestIdMiddleware(view)(RequestFactory().get("/", HTTP_X_REQUEST_ID="req-mw"))
    response.close()
    assert response["X-Request-ID"] == "req-mw"
    assert [r.request_id for r in caplog.records if r.name == "tests.view"] == ["req-mw"]
    assert request_id_var.get() is None  # cleared when the response closed


@pytest.mark.django_db
def test_both_wsgi_stacks_answer_a_request_id(test_topic):
    """Through the real WSGI application: a push runs on MACHINE_MIDDLEWARE, the admin on MIDDLEWARE."""
    from django.conf import settings

    from conftest import push_body
    from mercari_ops.common.tests.wsgi_client import wsgi_call

    name, _calls, _register = test_topic
    status, headers, _ = wsgi_call(f"/pubsub/push/{name}", method="POST", body=push_body({"event_id": "w-1"}),
                                   headers={"Authorization": f"Bearer {settings.PUBSUB_PUSH_TOKEN}",
                                            "X-Cloud-Trace-Context": "abc123def/7;o=1"})
    assert (status, headers["X-Request-ID"]) == (204, "abc123def")
    status, headers, _ = wsgi_call("/admin/login/")
    assert status == 200 and len(headers["X-Request-ID"]) == 16
    assert request_id_var.get() is None  # the answers were closed: nothing left for this thread's next lines
