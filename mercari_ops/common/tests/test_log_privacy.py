"""No personal data in the logs of the input paths, and one request ID from the caller to the worker.

Each test sends a real request (Pub/Sub push, Braze webhook, signed LINE webhook) carrying a known customer
or LINE ID down a path that logs, captures every record (DEBUG and up, so library lines count too), and
checks both what the log calls wrote (`record.getMessage()`) and what the JSON formatter prints.
"""

from __future__ import annotations

import json
import logging
import uuid

import pytest
import redis
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory

from conftest import push_body
from line_integration.tests.conftest import (  # noqa: F401  (fixtures: the LINE sandbox, linked customers)
    event,
    line_sandbox,
    line_sandbox_server,
    line_user_id,
    link_customers,
    signature,
    text_template,
    webhook_body,
)
from mercari_ops.celery import app
from mercari_ops.common.logging import TASK_HEADER, JsonFormatter, RequestIdMiddleware, log_safe_customer
from mercari_ops.common.schema import Schema, Str
from mercari_ops.inbox.registry import register_topic, unregister_topic

CUSTOMER = "cust-7d3e91-privacy"
LINE_USER = line_user_id(CUSTOMER)
probe_logger = logging.getLogger("mercari_ops.tests.log_probe")


@app.task(name="tests.log_probe")
def log_probe() -> None:
    probe_logger.info("probe ran")


@pytest.fixture
def logs(caplog):
    """logs() -> (records, the JSON formatter's objects of the same records)."""
    caplog.set_level(logging.DEBUG)
    formatter = JsonFormatter()

    def _logs():
        records = list(caplog.records)
        return records, [json.loads(formatter.format(record)) for record in records]

    return _logs


def assert_nowhere(secret: str, records, lines) -> None:
    # What the log calls wrote at INFO and up (the default LOG_LEVEL), and everything the formatter prints.
    written = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert not [m for m in written if secret in m]
    assert not [line for line in lines if secret in json.dumps(line, ensure_ascii=False)]


def _broker_take(queue: str, task: str) -> list[dict]:
    """The messages of `task` waiting in `queue` of the test broker, taken off it as a worker would."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=5)
    try:
        raws = [raw for raw in client.lrange(queue, 0, -1) if json.loads(raw)["headers"]["task"] == task]
        for raw in raws:
            client.lrem(queue, 1, raw)
        return [json.loads(raw) for raw in raws]
    finally:
        client.close()


@pytest.mark.django_db
def test_push_failure_hashes_the_customer_and_carries_request_id_topic_and_event(client, logs):
    # given a topic whose handler fails with an error quoting the customer (as a database error would)
    topic = f"test-privacy-{uuid.uuid4().hex[:6]}"

    def handle(event):
        raise RuntimeError(f"Key (customer_id)=({event['customer_id']}) is locked by another writer")

    register_topic(topic, schema=Schema({"event_id": Str(), "customer_id": Str()}), handle=handle)
    try:
        # when
        response = client.post(f"/pubsub/push/{topic}", data=push_body({"event_id": "ev-1", "customer_id": CUSTOMER}),
                               content_type="application/json", HTTP_X_REQUEST_ID="req-push-1",
                               HTTP_AUTHORIZATION=f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
    finally:
        unregister_topic(topic)
    # then
    assert response.status_code < 300 and response["X-Request-ID"] == "req-push-1"
    records, lines = logs()
    failed = [line for line in lines if "attempt 1 failed" in line["message"]]
    assert len(failed) == 1
    assert (failed[0]["request_id"], failed[0]["topic"], failed[0]["event_id"]) == ("req-push-1", topic, "ev-1")
    assert log_safe_customer(CUSTOMER) in failed[0]["message"]
    assert_nowhere(CUSTOMER, records, lines)


@pytest.mark.django_db
def test_braze_webhook_logs_no_ids_and_names_the_request(client, line_sandbox, text_template,  # noqa: F811
                                                         link_customers, logs):  # noqa: F811
    link_customers([CUSTOMER])
    body = {"user_id": CUSTOMER, "dispatch_id": "d-priv", "campaign_id": "braze-cmp-1",
            "template": "saved_search_new_items", "params": {"search_id": "s-1"}}
    headers = {"content_type": "application/json", "HTTP_AUTHORIZATION": f"Bearer {settings.BRAZE_WEBHOOK_TOKEN}"}
    # when one message is queued and one is refused (an unknown template: Django logs the 400)
    queued = client.post("/line/braze/webhook", data=json.dumps(body), HTTP_X_REQUEST_ID="req-braze-ok", **headers)
    refused = client.post("/line/braze/webhook", data=json.dumps({**body, "template": "nope"}),
                          HTTP_X_REQUEST_ID="req-braze-bad", **headers)
    # then
    assert (queued.status_code, queued["X-Request-ID"]) == (202, "req-braze-ok")
    assert (refused.status_code, refused["X-Request-ID"]) == (400, "req-braze-bad")
    records, lines = logs()
    bad_request = [line for line in lines if line["logger"] == "django.request"]
    assert [line["request_id"] for line in bad_request] == ["req-braze-bad"]
    assert_nowhere(CUSTOMER, records, lines)
    assert_nowhere(LINE_USER, records, lines)


@pytest.mark.django_db
def test_line_webhook_failure_never_logs_the_line_user_id(client, line_sandbox, logs):  # noqa: F811
    # given LINE fails the link-token call made for a follow (its path names the LINE user)
    line_sandbox.control("faults", {"endpoints": ["link_token"], "next": [500]})
    body = webhook_body(event("follow", LINE_USER))
    trace = "105445aa7843bc8bf206b12000100000"
    # when
    response = client.post("/line/webhook", data=body, content_type="application/json",
                           HTTP_X_LINE_SIGNATURE=signature(body), HTTP_X_CLOUD_TRACE_CONTEXT=f"{trace}/1;o=1")
    # then the request ID is the load balancer's trace, in the answer and on the warning
    assert response.status_code == 200 and response["X-Request-ID"] == trace
    records, lines = logs()
    warned = [line for line in lines if line["level"] == "WARNING" and line["logger"].startswith("line_integration")]
    assert warned and all(line["request_id"] == trace for line in warned)
    assert any("500" in line["message"] for line in warned)
    assert_nowhere(LINE_USER, records, lines)


@pytest.mark.django_db
def test_request_id_follows_a_task_into_the_worker(logs):
    # given a request that enqueues a task (through the real test broker)
    def view(request):
        log_probe.delay()
        return HttpResponse()

    response = RequestIdMiddleware(view)(RequestFactory().get("/admin/", HTTP_X_REQUEST_ID="req-task-1"))
    assert response["X-Request-ID"] == "req-task-1"
    response.close()  # the server closes the answer: request_finished ends the request's context
    queued = _broker_take("default", "tests.log_probe")
    assert len(queued) == 1 and queued[0]["headers"][TASK_HEADER] == "req-task-1"
    # when a worker runs the message (Celery's own worker request, from the raw message)
    from celery.worker.request import Request

    with app.connection_for_read() as connection:
        channel = connection.default_channel
        message = channel.Message(queued[0], channel=channel)
        Request(message, app=app, task=app.tasks["tests.log_probe"], hostname="test@localhost").execute()
    # then the task's lines carry the request ID and the task ID; afterwards the worker's context is as before
    records, lines = logs()
    ran = [line for line in lines if line["message"] == "probe ran"]
    assert ran == [{**ran[0], "request_id": "req-task-1", "task_id": queued[0]["headers"]["id"]}]
    after = logging.getLogger("x").makeRecord("x", logging.INFO, __file__, 1, "after", (), None)
    assert (after.request_id, after.task_id) == (None, None)
