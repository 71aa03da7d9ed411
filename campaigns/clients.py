"""The points gateway: an HTTP points service (POINTS_API_URL) or the in-project ledger.

HTTP contract we call (the points team's API; documented in the README):

    POST {POINTS_API_URL}/v1/grants
    Idempotency-Key: <key>          (same key on every retry of one grant)
    Authorization: Bearer <POINTS_API_TOKEN>   (when set)
    {"customer_id": "c-1", "points": 120, "reason": "..."}
    -> 200/201 granted; 409 already granted with this key (success for us);
       408/429/5xx, timeouts and connection errors: unavailable, retry later; other 4xx: rejected.

No retries inside the client: the caller (grant delivery) decides and keeps state in the database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import requests
from django.conf import settings

from mercari_ops.common.http import http_session

from .models import PointsLedgerEntry


class PointsGatewayError(Exception):
    pass


class PointsGatewayUnavailable(PointsGatewayError):
    """Down, overloaded or timing out: try again later with the same idempotency key."""


class PointsGatewayRejected(PointsGatewayError):
    """The service refused this grant for good (bad customer, bad amount)."""


@dataclass(frozen=True)
class GrantRequest:
    idempotency_key: str
    customer_id: str
    points: int
    reason: str


class PointsApiClient:
    batch = False

    def __init__(self, base_url: str, *, token: str = "", timeout: float = 5.0):
        self.base_url = base_url.rstrip("/")
        self.session = http_session(self.base_url, token=token)
        self.timeout = (min(2.0, timeout), timeout)

    def grant(self, request: GrantRequest) -> None:
        try:
            response = self.session.post(
                f"{self.base_url}/v1/grants",
                json={"customer_id": request.customer_id, "points": request.points, "reason": request.reason},
                headers={"Idempotency-Key": request.idempotency_key},
                timeout=self.timeout,
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise PointsGatewayUnavailable(f"points service unreachable: {exc.__class__.__name__}") from exc
        if response.status_code in (200, 201, 409):
            return
        if response.status_code in (408, 429) or response.status_code >= 500:
            raise PointsGatewayUnavailable(f"points service answered {response.status_code}")
        raise PointsGatewayRejected(f"points service rejected the grant: {response.status_code} "
                                    f"{response.text[:300]}")


class LedgerGateway:
    """Embedded default: one ledger row per idempotency key (INSERT ... ON CONFLICT DO NOTHING)."""

    batch = True

    def grant_many(self, requests_: Iterable[GrantRequest]) -> None:
        PointsLedgerEntry.objects.bulk_create(
            [PointsLedgerEntry(idempotency_key=r.idempotency_key, customer_id=r.customer_id, points=r.points,
                               reason=r.reason[:200]) for r in requests_],
            ignore_conflicts=True, batch_size=5000,
        )

    def grant(self, request: GrantRequest) -> None:
        self.grant_many([request])


def points_gateway() -> PointsApiClient | LedgerGateway:
    if settings.POINTS_API_URL:
        return PointsApiClient(settings.POINTS_API_URL, token=settings.POINTS_API_TOKEN,
                               timeout=settings.POINTS_API_TIMEOUT_SECONDS)
    return LedgerGateway()
