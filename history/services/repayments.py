"""Repay in place: the idempotent request, its outbox row, and the delivery with retries."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mercari_ops.common.enqueue import enqueue_after_commit
from mercari_ops.common.errors import Conflict, NotFound, Unprocessable

from ..clients import RepaymentClient, RepaymentRejected, RepaymentUnavailable
from ..models import EntryState, PaymentEntry, PaymentTransition, RepaymentRequest
from ..states import repay_refusal

logger = logging.getLogger(__name__)


def _stored_answer(request: RepaymentRequest, payment_id: str) -> RepaymentRequest:
    if request.response.get("payment_id") != payment_id:
        raise Unprocessable("this Idempotency-Key was already used for another payment", "Idempotency-Key")
    return request


@transaction.atomic
def repayment_request(*, payment_id: str, idempotency_key: str, requested_by: str = "") -> RepaymentRequest:
    """Move a billed card transaction to repayment_requested now and queue the call to the repayment service.

    The same key returns the same stored request (and answer); one outbox row per key.
    """
    existing = RepaymentRequest.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return _stored_answer(existing, payment_id)
    entry = PaymentEntry.objects.select_for_update().filter(payment_id=payment_id).first()
    if entry is None:
        raise NotFound(f"unknown payment {payment_id}", "payment_id")
    # Read again under the row lock: a concurrent request with this key may have committed meanwhile.
    existing = RepaymentRequest.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return _stored_answer(existing, payment_id)
    refusal = repay_refusal(entry_type=entry.type, state=entry.state)
    if refusal is not None:
        raise Conflict(refusal, "state")
    now = timezone.now()
    request = RepaymentRequest(
        idempotency_key=idempotency_key, entry=entry, amount=entry.amount, requested_by=requested_by[:150],
        created_at=now, next_attempt_at=now, response={},
    )
    request.response = {
        "repayment_id": str(request.public_id), "payment_id": entry.payment_id, "amount": entry.amount,
        "state": EntryState.REPAYMENT_REQUESTED.value, "requested_at": now.isoformat().replace("+00:00", "Z"),
    }
    try:
        with transaction.atomic():
            request.save()
    except IntegrityError:  # a request with this key for another payment (another row lock) committed first
        return _stored_answer(RepaymentRequest.objects.get(idempotency_key=idempotency_key), payment_id)
    PaymentEntry.objects.filter(pk=entry.pk).update(state=EntryState.REPAYMENT_REQUESTED, state_at=now,
                                                     updated_at=now)
    PaymentTransition.objects.create(
        entry=entry, kind="repay.requested", from_state=entry.state, to_state=EntryState.REPAYMENT_REQUESTED,
        source_id=str(request.public_id), amount=entry.amount, occurred_at=now, recorded_at=now,
        note=f"by {requested_by}"[:300] if requested_by else "",
    )
    from ..tasks import repayment_deliver_task

    enqueue_after_commit(repayment_deliver_task, request.pk)  # broker down: repayment_sweep sends it
    return request


@dataclass(frozen=True)
class Delivery:
    status: str  # sent | recorded | retry | failed | skipped
    retry_in: float | None = None


def _backoff(attempts: int) -> timedelta:
    return timedelta(seconds=min(5 * 2 ** (attempts - 1), 600))


def _request_fail(request: RepaymentRequest, error: str, now) -> None:
    """The service will never take it: the payment goes back to billed so the customer can repay again."""
    RepaymentRequest.objects.filter(pk=request.pk).update(
        status=RepaymentRequest.Status.FAILED, attempts=request.attempts, last_error=error[:2000],
        next_attempt_at=None,
    )
    entry = PaymentEntry.objects.select_for_update().get(pk=request.entry_id)
    if entry.state == EntryState.REPAYMENT_REQUESTED:
        PaymentEntry.objects.filter(pk=entry.pk).update(state=EntryState.BILLED, state_at=now, updated_at=now)
        PaymentTransition.objects.create(
            entry=entry, kind="repay.failed", from_state=entry.state, to_state=EntryState.BILLED,
            source_id=str(request.public_id), amount=request.amount, occurred_at=now, recorded_at=now,
            note=error[:300],
        )
    logger.error("repayment %s for %s failed: %s", request.public_id, entry.payment_id, error)


def repayment_deliver(*, request_pk: int, now=None) -> Delivery:
    """Send one pending request (row locked, so the task and the sweeper never send it twice)."""
    now = now or timezone.now()
    with transaction.atomic():
        request = (RepaymentRequest.objects.select_for_update(skip_locked=True)
                   .select_related("entry").filter(pk=request_pk, status=RepaymentRequest.Status.PENDING).first())
        if request is None:
            return Delivery("skipped")
        if not settings.REPAYMENT_API_URL:
            RepaymentRequest.objects.filter(pk=request.pk).update(
                status=RepaymentRequest.Status.RECORDED, sent_at=now, attempts=request.attempts + 1,
                next_attempt_at=None)
            return Delivery("recorded")
        request.attempts += 1
        client = RepaymentClient(settings.REPAYMENT_API_URL, token=settings.REPAYMENT_API_TOKEN,
                                 timeout=(3.05, settings.REPAYMENT_TIMEOUT_SECONDS))
        body = {"repayment_id": str(request.public_id), "payment_id": request.entry.payment_id,
                "customer_id": request.entry.customer_id, "amount": request.amount}
        try:
            client.repayment_create(idempotency_key=request.idempotency_key, body=body)
        except RepaymentRejected as exc:
            _request_fail(request, str(exc), now)
            return Delivery("failed")
        except RepaymentUnavailable as exc:
            if request.attempts >= settings.REPAYMENT_MAX_ATTEMPTS:
                _request_fail(request, f"gave up after {request.attempts} attempts: {exc}", now)
                return Delivery("failed")
            delay = _backoff(request.attempts)
            RepaymentRequest.objects.filter(pk=request.pk).update(
                attempts=request.attempts, last_error=str(exc)[:2000], next_attempt_at=now + delay)
            return Delivery("retry", retry_in=delay.total_seconds())
        RepaymentRequest.objects.filter(pk=request.pk).update(
            status=RepaymentRequest.Status.SENT, sent_at=now, attempts=request.attempts, last_error="",
            next_attempt_at=None)
        return Delivery("sent")


def repayment_sweep(*, now=None, limit: int = 200) -> dict[str, int]:
    """Deliver every pending request whose time has come (a lost task message is picked up here)."""
    now = now or timezone.now()
    due = list(RepaymentRequest.objects.filter(status=RepaymentRequest.Status.PENDING, next_attempt_at__lte=now)
               .order_by("next_attempt_at").values_list("pk", flat=True)[:limit])
    counts: dict[str, int] = {}
    for pk in due:
        status = repayment_deliver(request_pk=pk, now=now).status
        counts[status] = counts.get(status, 0) + 1
    return counts
