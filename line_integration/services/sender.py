"""Sending: LineRequests -> LINE, under the global limits, recording each outcome.

A sender claims due requests with a lease (its claim token), sends them from a thread pool, each call
paced (pacing.py), and records the outcomes in bulk, only for the requests still under its lease.
`sender_run` pipelines batches so the pool never runs dry; retries back off and repeat the identical
request under its retry key.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..clients import (
    LineBadRequest,
    LineConflict,
    LineError,
    LineRateLimited,
    LineServerError,
    LineTimeout,
    line_client,
)
from ..models import LineRequest, OutboundMessage
from . import delivery_sql, pacing
from .pacing import _rate_wait
from .pause import sending_paused
from .planning import _messages_set, _Outgoing, _plan, _requests_insert, _safe_render


def _send_one(request: LineRequest) -> tuple[str, int | None, str, str]:
    """(outcome, status, reason, accepted_request_id); outcome is sent, retry or failed."""
    _rate_wait(request.kind)
    try:
        response = line_client().send_body(kind=request.kind, body=request.body, retry_key=str(request.retry_key))
        return "sent", response.status, "", response.request_id
    except LineConflict as exc:  # the retry key was accepted earlier: delivered
        return "sent", 409, "retry key already accepted", exc.accepted_request_id
    except (LineRateLimited, LineServerError, LineTimeout) as exc:
        return "retry", exc.status, exc.reason if exc.status else str(exc), ""
    except LineBadRequest as exc:
        return "failed", exc.status, exc.reason, ""
    except LineError as exc:
        return "retry", exc.status, str(exc), ""


def _backoff(attempts: int) -> timedelta:
    base = settings.LINE_SEND_RETRY_BASE_SECONDS
    seconds = min(base * (2 ** max(attempts - 1, 0)), 300.0)
    return timedelta(seconds=seconds * (0.5 + random.random() / 2))


def _lease_new(now):
    """Until when a sender holds the requests it claims now; a random microsecond makes it its claim token."""
    return now + timedelta(seconds=settings.LINE_SEND_LEASE_SECONDS, microseconds=random.randint(0, 999_999))


def _claim(limit: int) -> tuple[list[LineRequest], object]:
    """Due requests, reserved for us until the lease (`_lease_new`)."""
    now = timezone.now()
    lease = _lease_new(now)
    with transaction.atomic():
        claimed = list(LineRequest.objects.select_for_update(skip_locked=True)
                       .filter(status=LineRequest.Status.PENDING, next_attempt_at__lte=now)
                       .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
                       .order_by("next_attempt_at", "id")[:limit])
        if claimed:
            LineRequest.objects.filter(id__in=[r.id for r in claimed]).update(claimed_until=lease)
    return claimed, lease


def requests_send_due(*, limit: int | None = None, pool: ThreadPoolExecutor | None = None,
                      while_sending=None) -> dict:
    """Claim due requests with a lease, send them concurrently, record outcomes in bulk.

    `while_sending()` runs in this thread while the pool sends.
    """
    own_pool = pool is None
    pool = pool or ThreadPoolExecutor(max_workers=settings.LINE_SEND_THREADS)
    try:
        batch, _ = _batch_start(pool, limit or settings.LINE_SEND_BATCH_SIZE)
        if batch is None:
            return {"claimed": 0}
        if while_sending is not None:
            while_sending()
        return _batch_finish(batch)
    finally:
        if own_pool:
            pool.shutdown()


def _batch_start(pool: ThreadPoolExecutor, limit: int, *, plan: bool = False) -> tuple[tuple | None, int]:
    """Claim due requests and queue their sends on the pool: (the batch or None when nothing is due, planned).

    With `plan`, room left in the batch is filled by planning queued messages into requests born claimed
    by this batch's lease (`_plan`): no second trip through the table to claim them back.
    """
    # Due retries first, but never the whole batch: after an outage a backlog of retries must not starve
    # newly queued messages until it clears.
    claimed, lease = _claim(limit - limit // 4 if plan else limit)
    planned = 0
    if plan and len(claimed) < limit:
        planned, fresh = _plan(limit=limit - len(claimed), lease=lease)
        claimed += fresh
    if not claimed:
        return None, planned
    sends = _Sends(claimed)
    drains = [pool.submit(sends.drain) for _ in range(min(settings.LINE_SEND_THREADS, len(claimed)))]
    return (claimed, lease, sends, drains), planned


class _Sends:
    """One batch's sends, shared by the pool's threads: each takes the next request in order until none is left.

    A task per thread, not per request: a Future per request (a Condition and a queue hand-off each)
    cost a tenth of a sender's CPU at 1,000 pushes a second.
    """

    def __init__(self, requests: list):
        self.requests = requests
        self.outcomes: list = [None] * len(requests)
        self._next = itertools.count()  # next() on it is atomic: each index goes to one thread

    def drain(self) -> None:
        total = len(self.requests)
        while (index := next(self._next)) < total:
            self.outcomes[index] = _send_one(self.requests[index])


def _batch_finish(batch: tuple) -> dict:
    claimed, lease, sends, futures = batch
    futures_wait(futures)  # one wake-up for the batch, not one per request
    for future in futures:
        future.result()  # a send that raised (not a LINE answer) fails the batch; its lease lets others retry
    return _record(claimed, sends.outcomes, lease)


def _record(claimed: list[LineRequest], outcomes: list[tuple], lease) -> dict:
    now = timezone.now()
    max_age = timedelta(hours=settings.LINE_SEND_MAX_AGE_HOURS)
    sent, failed, retry = [], [], []
    for request, (outcome, status, reason, accepted_id) in zip(claimed, outcomes, strict=True):
        request.attempts += 1
        request.last_status, request.last_error = status, reason[:2000]
        request.claimed_until = None
        if outcome == "sent":
            request.status, request.sent_at, request.accepted_request_id = LineRequest.Status.SENT, now, accepted_id
            sent.append(request)
        elif outcome == "failed" or now - request.created_at > max_age:
            request.status = LineRequest.Status.FAILED
            if outcome != "failed":
                request.last_error = f"gave up after {request.attempts} attempts: {reason}"[:2000]
            failed.append(request)
        else:
            request.next_attempt_at = now + _backoff(request.attempts)
            retry.append(request)
    with transaction.atomic():
        # Only rows still under our lease: if it expired and another worker took over, its result wins.
        mine = delivery_sql.requests_set(requests=claimed, lease=lease)
        sent_ids = [r.id for r in sent if r.id in mine]
        if sent_ids:
            OutboundMessage.objects.filter(request_id__in=sent_ids).update(status=OutboundMessage.Status.SENT,
                                                                           sent_at=now)
        for request in failed:
            if request.id in mine:
                OutboundMessage.objects.filter(request_id=request.id).update(
                    status=OutboundMessage.Status.FAILED, reason=request.last_error[:300])
    return {"claimed": len(claimed), "sent": len(sent), "retry": len(retry), "failed": len(failed),
            "lost_lease": len(claimed) - len(mine)}


def sender_run(*, seconds: float | None = None, until_idle: bool = True) -> dict:
    """Plan and send until nothing is due (or `seconds` pass). Returns totals.

    Pipelined so the pool never runs dry between batches (an idle gap is budget lost for good under an
    even schedule): the next batch is claimed (and planned) and queued behind the one on the wire, then
    this thread records the previous batch while the pool sends.
    """
    deadline = time.monotonic() + (seconds if seconds is not None else settings.LINE_SENDER_TASK_SECONDS)
    batch_size = settings.LINE_SEND_BATCH_SIZE
    totals = defaultdict(int)
    unused_before = pacing._pacers.unused()
    with ThreadPoolExecutor(max_workers=settings.LINE_SEND_THREADS) as pool:
        in_flight = None
        while True:
            running = time.monotonic() < deadline and not sending_paused()
            batch, planned = _batch_start(pool, batch_size, plan=True) if running else (None, 0)
            totals["planned"] += planned
            if batch is None and in_flight is None:
                if planned:  # all skipped or failed in planning: look again at once
                    continue
                if until_idle or not running:
                    break
                time.sleep(0.2)
                continue
            if in_flight is not None:
                for key, value in _batch_finish(in_flight).items():
                    totals[key] += value
            in_flight = batch
    totals.setdefault("claimed", 0)
    # Budget this process booked and could not use (threads busy or woken late): what pacing cost.
    totals["paced_slots_unused"] = pacing._pacers.unused() - unused_before
    return dict(totals)


def work_pending() -> bool:
    now = timezone.now()
    return (OutboundMessage.objects.filter(status=OutboundMessage.Status.QUEUED).exists()
            or LineRequest.objects.filter(status=LineRequest.Status.PENDING, next_attempt_at__lte=now)
            .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)).exists())


def message_send_now(*, message_id: int) -> dict:
    """Plan one queued message into its own push and send it at once (the greeting after linking).

    If LINE is busy or down, the request stays pending and the sender retries it with the same key.
    """
    if sending_paused():  # stays queued: the senders plan it once sending resumes
        return {"claimed": 0, "paused": 1}
    now = timezone.now()
    with transaction.atomic():
        row = delivery_sql.queued_claim_one(message_id=message_id)
        if row is None:
            return {"claimed": 0}
        message_id, kind, template, params, line_user_id, skip = row
        if skip:  # blocked or unlinked again before the greeting went out
            _messages_set([(message_id, OutboundMessage.Status.SKIPPED, None, skip)])
            return {"claimed": 0, "skipped": 1}
        messages, error = _safe_render(kind, template, params, {})
        if error:
            _messages_set([(message_id, OutboundMessage.Status.FAILED, None, error[:300])])
            return {"claimed": 0, "failed": 1}
        lease = _lease_new(now)
        request = _Outgoing(LineRequest.Kind.PUSH, {"to": line_user_id, "messages": messages}, 1, now, lease)
        _requests_insert([request], now, lease)
        _messages_set([(message_id, OutboundMessage.Status.PLANNED, request.id, "")])
    return _record([request], [_send_one(request)], lease)
