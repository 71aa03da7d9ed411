"""Repay in place: idempotency, 409s, and the outbox delivered to a real local HTTP server."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.utils import timezone

from history.models import PaymentEntry, PaymentTransition, RepaymentRequest
from history.services import repayment_deliver, repayment_request, repayment_sweep
from mercari_ops.common.errors import Conflict

from .factories import card_tree, payment_event

pytestmark = pytest.mark.django_db
TOPIC = "payment-events"


class RepaymentService:
    """A real HTTP server standing in for the repayment service; answers from a script of statuses."""

    def __init__(self, statuses=(201,)):
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service.requests.append({"path": self.path, "key": self.headers.get("Idempotency-Key"),
                                         "auth": self.headers.get("Authorization"), "body": body})
                status = service.statuses.pop(0) if len(service.statuses) > 1 else service.statuses[0]
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "ok"}')

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def service(settings):
    running = RepaymentService()
    settings.REPAYMENT_API_URL = running.url
    settings.REPAYMENT_API_TOKEN = "repay-token"
    yield running
    running.close()


@pytest.fixture
def billed(push):
    for event in card_tree(1, repaid=False):
        assert push(TOPIC, event).status_code == 204
    return "tx-1"


def repay(api_client, payment_id, key="key-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key is not None else {}
    return api_client.post(f"/api/history/payments/{payment_id}/repay", **headers)


def test_repay_is_visible_at_once_and_sent_once(api_client, billed, service, eager_celery,
                                                  django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = repay(api_client, billed)
    assert response.status_code == 202
    body = response.json()
    assert (body["payment_id"], body["amount"], body["state"]) == ("tx-1", 3000, "repayment_requested")
    detail = api_client.get("/api/history/payments/tx-1").json()
    assert (detail["state"], detail["actions"]) == ("repayment_requested", [])
    assert service.requests == [{"path": "/repayments", "key": "key-1", "auth": "Bearer repay-token", "body": {
        "repayment_id": body["repayment_id"], "payment_id": "tx-1", "customer_id": "c-1", "amount": 3000}}]
    assert RepaymentRequest.objects.get().status == "sent"


def test_same_key_twice_gives_the_same_answer_and_one_request(api_client, billed, service, eager_celery,
                                                              django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = repay(api_client, billed)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        second = repay(api_client, billed)
    assert (second.status_code, second.json()) == (202, first.json())
    assert callbacks == []  # nothing new queued
    assert RepaymentRequest.objects.count() == 1
    assert len(service.requests) == 1
    assert PaymentTransition.objects.filter(kind="repay.requested").count() == 1


def test_repay_without_idempotency_key_is_400_naming_the_header(api_client, billed):
    response = repay(api_client, billed, key=None)
    assert response.status_code == 400
    assert response.json() == {"error": "the Idempotency-Key header is required", "field": "Idempotency-Key"}
    assert PaymentEntry.objects.get(payment_id=billed).state == "billed"


@pytest.mark.parametrize(("payment_id", "reason"), [
    ("tx-2", "only a billed, unpaid card transaction can be repaid; this one is authorized"),
    ("tx-3", "only a billed, unpaid card transaction can be repaid; this one is repaid"),
    ("pur-2", "only a mercard.transaction can be repaid; this is a mercari.purchase"),
])
def test_repay_not_allowed_is_409_with_the_reason(api_client, push, payment_id, reason):
    for event in card_tree(2, repaid=False)[:2] + card_tree(3):
        push(TOPIC, event)
    response = repay(api_client, payment_id)
    assert response.status_code == 409
    assert response.json() == {"error": reason, "field": "state"}
    assert not RepaymentRequest.objects.exists()


def test_repay_twice_with_different_keys_is_409_the_second_time(api_client, billed):
    assert repay(api_client, billed, "a").status_code == 202
    second = repay(api_client, billed, "b")
    assert second.status_code == 409
    assert "repayment_requested" in second.json()["error"]


def test_key_reused_for_another_payment_is_422(api_client, push, billed):
    for event in card_tree(4, repaid=False):
        push(TOPIC, event)
    assert repay(api_client, billed, "shared").status_code == 202
    response = repay(api_client, "tx-4", "shared")
    assert (response.status_code, response.json()["field"]) == (422, "Idempotency-Key")


def test_unknown_payment_is_404(api_client, db):
    assert repay(api_client, "tx-nope").status_code == 404


def test_server_errors_are_retried_with_the_same_key_until_sent(billed, service):
    service.statuses = [503, 500, 201]
    request = repayment_request(payment_id=billed, idempotency_key="k")
    assert repayment_deliver(request_pk=request.pk).status == "retry"
    request.refresh_from_db()
    assert (request.status, request.attempts) == ("pending", 1)
    assert repayment_sweep() == {}  # backoff not over
    later = request.next_attempt_at + timedelta(seconds=1)
    assert repayment_sweep(now=later) == {"retry": 1}
    request.refresh_from_db()
    assert repayment_sweep(now=request.next_attempt_at + timedelta(seconds=1)) == {"sent": 1}
    assert [r["key"] for r in service.requests] == ["k", "k", "k"]
    assert repayment_sweep(now=later + timedelta(days=1)) == {}  # sent once, never again


def test_celery_task_retries_on_its_own(api_client, billed, service, eager_celery,
                                        django_capture_on_commit_callbacks):
    service.statuses = [503, 201]
    with django_capture_on_commit_callbacks(execute=True):
        assert repay(api_client, billed).status_code == 202
    assert len(service.requests) == 2
    assert RepaymentRequest.objects.get().status == "sent"


def test_service_down_is_retried(billed, settings):
    settings.REPAYMENT_API_URL = "http://127.0.0.1:9"  # nothing listens (discard port)
    request = repayment_request(payment_id=billed, idempotency_key="k")
    assert repayment_deliver(request_pk=request.pk).status == "retry"
    request.refresh_from_db()
    assert "Connection" in request.last_error


def test_rejection_sends_the_payment_back_to_billed(api_client, billed, service):
    service.statuses = [422]
    request = repayment_request(payment_id=billed, idempotency_key="k")
    assert repayment_deliver(request_pk=request.pk).status == "failed"
    entry = PaymentEntry.objects.get(payment_id=billed)
    assert entry.state == "billed"
    assert entry.transitions.last().kind == "repay.failed"
    assert api_client.get(f"/api/history/payments/{billed}").json()["actions"][0]["action"] == "repay"
    assert RepaymentRequest.objects.get().status == "failed"


def test_gives_up_after_max_attempts(billed, service, settings):
    settings.REPAYMENT_MAX_ATTEMPTS = 2
    service.statuses = [503]
    request = repayment_request(payment_id=billed, idempotency_key="k")
    far = timezone.now() + timedelta(days=1)
    assert repayment_deliver(request_pk=request.pk, now=far).status == "retry"
    assert repayment_deliver(request_pk=request.pk, now=far).status == "failed"
    assert PaymentEntry.objects.get(payment_id=billed).state == "billed"


def test_without_repayment_api_url_the_request_is_recorded_in_project(billed, settings):
    settings.REPAYMENT_API_URL = ""
    request = repayment_request(payment_id=billed, idempotency_key="k")
    assert repayment_sweep() == {"recorded": 1}
    request.refresh_from_db()
    assert (request.status, request.sent_at is not None) == ("recorded", True)


def test_a_lost_task_message_is_delivered_by_the_sweeper(api_client, billed, service):
    assert repay(api_client, billed).status_code == 202  # on_commit never ran: the message is lost
    assert service.requests == []
    assert repayment_sweep() == {"sent": 1}
    assert len(service.requests) == 1


def test_repayment_completed_event_moves_it_to_repaid(api_client, push, billed):
    repay(api_client, billed)
    push(TOPIC, payment_event("repayment.completed", "rep-1", billed, minutes=100))
    entry = PaymentEntry.objects.get(payment_id=billed)
    assert entry.state == "repaid"
    assert list(entry.transitions.values_list("to_state", flat=True)) == [
        "authorized", "billed", "repayment_requested", "repaid"]


def test_service_refuses_conflicting_state_directly(push, billed):
    push(TOPIC, payment_event("payment.refunded", "ref-1", billed, minutes=100))
    with pytest.raises(Conflict):
        repayment_request(payment_id=billed, idempotency_key="k")


@pytest.mark.django_db(transaction=True)
def test_same_key_at_the_same_time_on_two_workers_is_one_request(push):
    for event in card_tree(9, repaid=False):
        push(TOPIC, event)
    barrier = threading.Barrier(4)
    answers, errors = [], []

    def worker():
        try:
            barrier.wait()
            answers.append(repayment_request(payment_id="tx-9", idempotency_key="same").response)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(answers) == 4 and all(answer == answers[0] for answer in answers)
    assert RepaymentRequest.objects.count() == 1
