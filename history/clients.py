"""Outbound HTTP to the repayment service (REPAYMENT_API_URL).

    POST {REPAYMENT_API_URL}/repayments
    Idempotency-Key: <the caller's key>      (the service dedupes retries on it)
    {"repayment_id", "payment_id", "customer_id", "amount"}
    -> 2xx accepted; 409 already accepted (same key): also success.

No retries in here: the outbox (services.repayments) decides.
"""

from __future__ import annotations

import requests

from mercari_ops.common.http import http_session


class RepaymentError(Exception):
    pass


class RepaymentUnavailable(RepaymentError):
    """Timeout, connection error, 429 or 5xx: try again later."""


class RepaymentRejected(RepaymentError):
    """Any other 4xx: the service will never accept this request."""


class RepaymentClient:
    def __init__(self, base_url: str, *, timeout: tuple[float, float] = (3.05, 10.0), token: str = ""):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = http_session(self.base_url, token=token)

    def repayment_create(self, *, idempotency_key: str, body: dict) -> int:
        """The HTTP status (2xx or 409) once the service holds the request."""
        try:
            response = self.session.post(f"{self.base_url}/repayments", json=body, timeout=self.timeout,
                                         headers={"Idempotency-Key": idempotency_key})
        except requests.RequestException as exc:
            raise RepaymentUnavailable(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if 200 <= status < 300 or status == 409:
            return status
        if status == 429 or status >= 500:
            raise RepaymentUnavailable(f"HTTP {status}: {response.text[:300]}")
        raise RepaymentRejected(f"HTTP {status}: {response.text[:300]}")
