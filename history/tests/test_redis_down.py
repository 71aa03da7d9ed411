"""Repay with Redis down (issue 16 point 7): the committed request answers its normal 202 and the
repayment sweeper sends it once Redis is back. Transactional: the after-commit enqueue runs in the request."""

import pytest

from history.models import RepaymentRequest
from history.services import repayment_sweep
from mercari_ops.common.tests.brokers import celery_broker, closed_port_url

from .factories import card_tree
from .test_repay import RepaymentService

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def service(settings):
    running = RepaymentService()
    settings.REPAYMENT_API_URL = running.url
    settings.REPAYMENT_API_TOKEN = "repay-token"
    yield running
    running.close()


def test_repay_with_redis_down_answers_202_and_the_sweeper_sends_it_once(push, api_client, service):
    for event in card_tree(1, repaid=False):
        assert push("payment-events", event).status_code == 204
    with celery_broker(closed_port_url()):
        response = api_client.post("/api/history/payments/tx-1/repay", HTTP_IDEMPOTENCY_KEY="key-1")
    assert response.status_code == 202  # was a 500 although the request was committed
    assert response.json()["state"] == "repayment_requested"
    assert RepaymentRequest.objects.get().status == "pending" and service.requests == []
    # the sweeper (history.repayment_sweep) sends it, once
    assert repayment_sweep() == {"sent": 1}
    assert repayment_sweep() == {}
    assert [request["key"] for request in service.requests] == ["key-1"]
    assert RepaymentRequest.objects.get().status == "sent"
    # the same key again: the stored answer, nothing new
    again = api_client.post("/api/history/payments/tx-1/repay", HTTP_IDEMPOTENCY_KEY="key-1")
    assert (again.status_code, again.json()) == (202, response.json())
