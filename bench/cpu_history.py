"""CPU per history GET (page 1 of 25 card purchases) in process, for an A/B between commits:
`make test PYTEST_ARGS="bench/cpu_history.py -s -p no:cacheprovider"` in each checkout."""

import time

import pytest

from history.tests.factories import card_tree

pytestmark = pytest.mark.django_db


def test_cpu_per_history_get(push):
    from mercari_ops.common.services import service_token_create
    from mercari_ops.common.tests.wsgi_client import wsgi_call

    for n in range(25):
        for event in card_tree(n, start=n * 10, repaid=n % 2 == 1):
            assert push("payment-events", event).status_code == 204
    headers = {"Authorization": f"Token {service_token_create(name='cpu')}"}
    for _ in range(300):  # warm
        status, _, content = wsgi_call("/api/history/customers/c-1/payments", headers=headers)
    assert status == 200, content
    rounds = []
    for _ in range(5):
        started = time.process_time()
        for _ in range(1000):
            wsgi_call("/api/history/customers/c-1/payments", headers=headers)
        rounds.append((time.process_time() - started) * 1000)
    print(f"history page 1: {min(rounds):.1f} us of CPU per GET (best of 5 x 1,000)")
