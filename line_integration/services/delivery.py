"""Proactive delivery: accept (Braze, line_notify), plan into LINE requests, send under the global limits.

Life of a message: `queued` (one row per dispatch_id + user_id) -> `planned` into a
LineRequest (a push, or a multicast of up to 500 identical rendered messages) ->
`sent` / `failed`. The LineRequest keeps the exact body and its X-Line-Retry-Key,
so every retry (after a 429, a 5xx, a timeout or a killed worker whose lease
expired) is the identical request and LINE delivers it at most once.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.ratelimit import Clock, rate_limiter
from mercari_ops.common.schema import Dict, Schema, Str

from ..clients import (
    LineBadRequest,
    LineConflict,
    LineError,
    LineRateLimited,
    LineServerError,
    LineTimeout,
    line_client,
)
from ..models import LineRequest, MessageTemplate, OutboundMessage
from ..selectors import line_user_linked
from . import delivery_sql
from .templates import RenderError, template_names, template_render, template_save  # noqa: F401

logger = logging.getLogger(__name__)

BRAZE_SCHEMA = Schema({
    "user_id": Str(max_length=64), "dispatch_id": Str(max_length=200),
    "campaign_id": Str(max_length=200, required=False), "template": Str(max_length=64), "params": Dict(required=False),
})
MULTICAST_MAX = 500


def messages_accept(messages: list[dict], *, kind: str = OutboundMessage.Kind.BRAZE) -> list[tuple[str, str]]:
    """Record messages ({dispatch_id, user_id, template?, params?, campaign_id?}) in one statement.

    Each (dispatch_id, user_id) is recorded once: `queued` while the customer's LINE account is linked,
    `skipped` with the reason otherwise (`delivery_sql._skip_reason`). Returns (status, reason) of each
    message, in order; a repeat is answered as the first time.
    """
    outcome = delivery_sql.messages_accept(kind=kind, now=timezone.now(), messages=[
        (m["dispatch_id"], m["user_id"], m.get("campaign_id", ""), m.get("template", ""),
         json.dumps(m.get("params") or {})) for m in messages])
    return [outcome.get((m["dispatch_id"], m["user_id"]), (OutboundMessage.Status.QUEUED, "")) for m in messages]


def message_enqueue(*, dispatch_id: str, user_id: str, template: str = "", params: dict | None = None,
                    campaign_id: str = "", kind: str = OutboundMessage.Kind.BRAZE) -> tuple[str, str]:
    """Record one message (see `messages_accept`); its (status, reason)."""
    return messages_accept([{"dispatch_id": dispatch_id, "user_id": user_id, "template": template,
                             "params": params, "campaign_id": campaign_id}], kind=kind)[0]


def braze_clean(*, body: bytes) -> dict:
    """The validated webhook body, or ValidationFailed naming the bad field (400)."""
    try:
        data = json.loads(body)
    except ValueError:
        raise ValidationFailed("body is not valid JSON", "body")
    cleaned = BRAZE_SCHEMA.clean(data, "")
    if cleaned["template"] not in template_names():
        raise ValidationFailed(f"unknown template {cleaned['template']!r}", "template")
    return cleaned


def braze_answer(status: str, reason: str) -> dict:
    """The webhook's 202 body for a recorded message."""
    if status == OutboundMessage.Status.SKIPPED:
        return {"status": "skipped", "reason": reason}
    return {"status": "queued"}


def braze_accept(*, body: bytes) -> dict:
    """Validate a Braze webhook body and record its message. Raises ValidationFailed naming the field."""
    return braze_answer(*messages_accept([braze_clean(body=body)])[0])


def line_notify(*, customer_id: str, text: str, idempotency_key: str) -> bool:
    """Queue one push of `text` to the customer's LINE, once per idempotency_key (see interfaces.md).

    True when the customer has a linked, not-blocked LINE account (the push is queued or
    was queued before under this key); False otherwise (the caller notifies another way).
    """
    if not line_user_linked(customer_id=customer_id):  # no row for customers LINE cannot reach
        return False
    status, _ = message_enqueue(dispatch_id=f"notify:{idempotency_key}", user_id=customer_id,
                                params={"messages": [{"type": "text", "text": text[:5000]}]},
                                kind=OutboundMessage.Kind.NOTIFY)
    if status == OutboundMessage.Status.SKIPPED:
        return False
    _kick_after_commit()
    return True


def test_message_send(*, customer_id: str, text: str = "Test message from Mercari Ops") -> tuple[str, str]:
    """The admin's "send test message": a one-off push through the normal path (limits, retries, records)."""
    status = message_enqueue(dispatch_id=f"test:{uuid.uuid4()}", user_id=customer_id,
                             params={"messages": [{"type": "text", "text": text}]}, kind=OutboundMessage.Kind.TEST)
    _kick_after_commit()
    return status


def _kick_after_commit() -> None:
    def kick():
        from ..tasks import line_send_due

        try:
            line_send_due.delay()
        except Exception:  # the broker being down must not fail the caller; the beat kick sends it later
            logger.warning("could not enqueue line.send_due; the periodic kick will send", exc_info=True)

    transaction.on_commit(kick)


# ---- planning: queued messages -> LineRequests -------------------------------------------------------
def _render_parts(kind: str, template_name: str, params: dict, templates: dict[str, MessageTemplate]) -> list[dict]:
    if kind != OutboundMessage.Kind.BRAZE:
        return params["messages"]
    template = templates.get(template_name)
    if template is None:
        raise RenderError(f"template {template_name!r} no longer exists")
    return template_render(template=template, params=params)


def _retry_key_new() -> str:
    """A random (version 4) UUID as text, the X-Line-Retry-Key of one new request.

    `str(uuid.uuid4())` spends most of its time validating its own arguments in `UUID.__init__`; the
    sender makes one per message, 1,000 a second.
    """
    digits = os.urandom(16).hex()
    return (f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{'89ab'[int(digits[16], 16) & 3]}{digits[17:20]}-"
            f"{digits[20:]}")


class _Outgoing:
    """A LineRequest this sender just made, as `_send_one` and `_record` read it (a model instance costs more)."""

    __slots__ = ("id", "kind", "body", "recipient_count", "retry_key", "attempts", "status", "last_status",
                 "last_error", "claimed_until", "sent_at", "accepted_request_id", "next_attempt_at", "created_at")

    def __init__(self, kind: str, body: dict, recipient_count: int, now, lease):
        self.id, self.kind, self.body, self.recipient_count = None, kind, body, recipient_count
        self.retry_key = _retry_key_new()
        self.attempts, self.status, self.last_status, self.last_error = 0, LineRequest.Status.PENDING, None, ""
        self.claimed_until, self.sent_at, self.accepted_request_id = lease, None, ""
        self.next_attempt_at = self.created_at = now


def outbound_plan(*, limit: int | None = None) -> int:
    """Claim queued messages (SKIP LOCKED), render, coalesce identical ones into multicasts. Returns count.

    Messages whose LINE user has since blocked the account or been unlinked are `skipped` with that
    reason instead (see `delivery_sql._skip_reason`; `planned_cancel` handles those already planned).
    """
    return _plan(limit=limit or settings.LINE_SEND_BATCH_SIZE)[0]


def _plan(*, limit: int, lease=None) -> tuple[int, list[LineRequest]]:
    """`outbound_plan`; returns (messages claimed, the LineRequests made).

    With a `lease`, the requests are made already claimed by the caller until then (the sender sends
    them straight away instead of claiming them back from the table); a caller that dies leaves them to
    whoever claims them after the lease, as with any claim.
    """
    now = timezone.now()
    with transaction.atomic():
        claimed = delivery_sql.queued_claim(limit=limit)  # (id, kind, template, params, line_user_id, skip reason)
        if not claimed:
            return 0, []
        batch, changes = [], []  # changes: (message id, status, request id, reason)
        for row in claimed:
            if row[5]:
                changes.append((row[0], OutboundMessage.Status.SKIPPED, None, row[5]))
            else:
                batch.append(row)
        names = {row[2] for row in batch if row[2]}
        templates = {t.name: t for t in MessageTemplate.objects.filter(name__in=names)}

        def render(row):
            return _safe_render(row[1], row[2], row[3], templates)

        if any(t.enrich_path for t in templates.values()):  # enrichment is an HTTP call per message: overlap them
            with ThreadPoolExecutor(max_workers=8) as pool:
                results = list(pool.map(render, batch))
        else:  # pure CPU: threads would only fight over the GIL with the sending threads
            results = [render(row) for row in batch]
        groups: dict[str, list[tuple]] = defaultdict(list)
        rendered: dict[str, list[dict]] = {}
        for row, (messages, error) in zip(batch, results, strict=True):
            if error:
                changes.append((row[0], OutboundMessage.Status.FAILED, None, error[:300]))
                continue
            key = json.dumps(messages, sort_keys=True, separators=(",", ":"))
            rendered[key] = messages
            groups[key].append(row)
        plans: list[tuple[_Outgoing, list[tuple]]] = []
        for key, members in groups.items():
            for start in range(0, len(members), MULTICAST_MAX):
                chunk = members[start:start + MULTICAST_MAX]
                if len(chunk) == 1:
                    request = _Outgoing(LineRequest.Kind.PUSH, {"to": chunk[0][4], "messages": rendered[key]}, 1,
                                        now, lease)
                else:
                    request = _Outgoing(LineRequest.Kind.MULTICAST, {"to": [row[4] for row in chunk],
                                                                     "messages": rendered[key]}, len(chunk), now, lease)
                plans.append((request, chunk))
        created = _requests_insert([request for request, _ in plans], now, lease)
        for request, chunk in zip(created, (chunk for _, chunk in plans), strict=True):
            changes.extend((row[0], OutboundMessage.Status.PLANNED, request.id, "") for row in chunk)
        _messages_set(changes)
    return len(claimed), created


def _requests_insert(requests: list[_Outgoing], now, lease) -> list[_Outgoing]:
    """Insert new LineRequests; returns them, in order, with their ids."""
    if not requests:
        return []
    ids = delivery_sql.requests_insert(now=now, lease=lease, requests_json=json.dumps([
        {"kind": r.kind, "retry_key": r.retry_key, "body": r.body, "count": r.recipient_count} for r in requests]))
    for request in requests:
        request.id = ids[request.retry_key]
    return requests


@transaction.atomic
def planned_cancel(*, line_user_id: str, reason: str) -> int:
    """Take a LINE user who just blocked the account or was unlinked out of requests not yet sent.

    Queued messages need nothing: planning re-reads the account (`delivery_sql._skip_reason`). Messages already
    planned into a LineRequest are handled by what LINE may have seen of it:
    - never claimed by a sender (claimed_until NULL, attempts 0): LINE has not seen the request, so its
      body may still change under its retry key. The user's messages become `skipped` with the reason,
      the user leaves the multicast's `to`, and a request left with no recipient is `cancelled`.
    - claimed at least once: it may already have reached LINE (a timeout, a 5xx after acceptance, a
      killed worker), so it is retried unchanged, to stay exactly-once; the user may get that one
      message, as they would have had it gone out a moment earlier.
    A planner that read the account just before this commit can still plan the user's messages (a
    window of one planning transaction); those are sent.
    Returns how many messages were skipped.
    """
    request_ids = set(OutboundMessage.objects.filter(status=OutboundMessage.Status.PLANNED, line_user_id=line_user_id)
                      .values_list("request_id", flat=True))
    if not request_ids:
        return 0
    skipped = 0
    untouched = (LineRequest.objects.select_for_update()
                 .filter(id__in=request_ids, status=LineRequest.Status.PENDING, attempts=0, claimed_until__isnull=True))
    for request in untouched:
        skipped += OutboundMessage.objects.filter(
            request=request, line_user_id=line_user_id, status=OutboundMessage.Status.PLANNED).update(
            status=OutboundMessage.Status.SKIPPED, reason=reason, request=None)
        recipients = request.body["to"] if isinstance(request.body["to"], list) else [request.body["to"]]
        remaining = [to for to in recipients if to != line_user_id]
        if remaining:
            request.body = {**request.body, "to": remaining}
            request.recipient_count = len(remaining)
            request.save(update_fields=["body", "recipient_count"])
        else:
            request.status, request.last_error = LineRequest.Status.CANCELLED, f"cancelled: recipient {reason}"
            request.save(update_fields=["status", "last_error"])
    return skipped


def _safe_render(kind: str, template_name: str, params, templates) -> tuple[list[dict] | None, str | None]:
    """(messages, None), or (None, the reason) when the message cannot be rendered."""
    try:
        return _render_parts(kind, template_name, params if isinstance(params, dict) else json.loads(params),
                             templates), None
    except RenderError as exc:
        return None, str(exc)


# ---- sending: LineRequests -> LINE ---------------------------------------------------------------------
def _limit_for(kind: str) -> int:
    return settings.LINE_PUSH_RATE_PER_SECOND if kind == "push" else settings.LINE_MULTICAST_RATE_PER_SECOND


class _MonotonicClock:
    """A pacer's clock in production (`ratelimit.Clock`): monotonic seconds and the process's sleep."""

    @staticmethod
    def time() -> float:
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        time.sleep(seconds)


class _Pacer:
    """This process's share of one global even schedule, reserved a few slots per Redis call.

    Every worker process paces on one even schedule (a slot every 1/rate seconds, GCRA in Redis), so no
    sliding second holds more than the aimed rate and there are no bursts at slice or window edges. One
    Redis round trip per call cost more CPU than the rest of the pacing; here a process reserves the
    next few consecutive slots at once (`RateLimiter.reserve_many`) and hands them to its sending
    threads in order, each thread sleeping until its own slot. A slot nobody took in time is dropped,
    never used late, and so is a slot whose thread woke from its sleep too late (`late` counts them):
    the schedule does not slip back, so a stall cannot turn into a burst.

    Time is `clock`'s: None in production (monotonic time here, Redis's clock in the limiter); a test
    passes a manual clock, used by both, so a schedule is asserted exactly without waiting for it.
    """

    STALE = 0.005  # seconds past its time after which a slot is dropped instead of used

    def __init__(self, key: str, limit: int, batch: int, *, clock: Clock | None = None):
        self.key, self.limit, self.batch = key, limit, batch
        self.clock = clock or _MonotonicClock
        self.limiter = rate_limiter(clock=clock)
        self.lock = threading.Lock()
        self.slots: deque[float] = deque()  # clock time of each reserved slot, in order
        self.waiting = 0  # threads inside wait(): a reservation books no more slots than they can take
        self.late = 0  # slots given up because their thread woke too late to use them on time
        self.stale = 0  # slots nobody took in time

    def wait(self) -> None:
        """Block until this thread's slot."""
        with self.lock:
            self.waiting += 1
        try:
            self._wait()
        finally:
            with self.lock:
                self.waiting -= 1

    def _wait(self) -> None:
        while True:
            with self.lock:
                now = self.clock.time()
                while self.slots and self.slots[0] < now - self.STALE:
                    self.slots.popleft()
                    self.stale += 1
                retry_in = 0.0
                if not self.slots:
                    # Slots booked for threads still busy on the wire would mostly go stale (dropped, and
                    # lost to every other process too): book one per thread waiting now, up to the batch.
                    count = max(1, min(self.batch, self.waiting))
                    waits, retry_in = self.limiter.reserve_many(self.key, limit=self.limit, count=count)
                    booked = self.clock.time()  # slots are counted from the answer: late, never early
                    self.slots.extend(booked + wait for wait in waits)
                slot = self.slots.popleft() if self.slots else None
            if slot is None:
                self.clock.sleep(retry_in)
                continue
            delay = slot - self.clock.time()
            if delay > 0:
                self.clock.sleep(delay)
            if self.clock.time() - slot <= self.STALE:
                return
            # Woken too late (the GIL, the scheduler): sending now would land among the next slots' calls
            # and bunch them into one second. This slot is lost; take the next free one.
            self.late += 1


class _Pacers:
    """The process's pacers, one per (kind, aimed rate, batch), on one clock (see `_Pacer`)."""

    def __init__(self, *, clock: Clock | None = None):
        self.clock = clock
        self._pacers: dict[tuple[str, int, int], _Pacer] = {}
        self._lock = threading.Lock()

    def get(self, kind: str, limit: int, batch: int) -> _Pacer:
        pacer = self._pacers.get((kind, limit, batch))
        if pacer is None:
            with self._lock:
                pacer = self._pacers.setdefault((kind, limit, batch),
                                                _Pacer(f"line:{kind}", limit, batch, clock=self.clock))
        return pacer

    def unused(self) -> int:
        """Slots booked and not used (threads busy, or woken late) by every pacer so far."""
        return sum(pacer.stale + pacer.late for pacer in list(self._pacers.values()))


_pacers = _Pacers()


def _rate_wait(kind: str) -> None:
    """Take one call from the global budget, paced so LINE never sees more than the limit in any second.

    LINE counts at arrival and thread scheduling moves arrivals by a few ms, so we aim a little under the
    limit (LINE_RATE_SAFETY). Calls are paced on one even schedule shared by every worker (`_Pacer`): no
    bursts at slice or window boundaries, so no sliding second holds more than the aimed rate, and a
    thread that wakes up late does not push the later slots back, so the achieved rate is the aimed rate
    when the senders keep up.
    """
    limit = _limit_for(kind)
    if limit <= 0:  # 0 = no client-side limit (benchmarks of the raw ceiling)
        return
    effective = max(1, int(limit * settings.LINE_RATE_SAFETY))
    if limit < 200:  # a few percent is less than one request here: keep a tenth of the limit as headroom instead
        effective = max(1, min(effective, limit - -(-limit // 10)))
    _pacers.get(kind, effective, max(1, min(2 * settings.LINE_SEND_THREADS, 16))).wait()


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


def _messages_set(changes: list[tuple[int, str, int | None, str]]) -> None:
    """Write (message id, status, request id, reason) for each message."""
    if changes:
        delivery_sql.messages_set(changes=changes)


def sender_run(*, seconds: float | None = None, until_idle: bool = True) -> dict:
    """Plan and send until nothing is due (or `seconds` pass). Returns totals.

    Pipelined so the pool never runs dry between batches (an idle gap is budget lost for good under an
    even schedule): the next batch is claimed (and planned) and queued behind the one on the wire, then
    this thread records the previous batch while the pool sends.
    """
    deadline = time.monotonic() + (seconds if seconds is not None else settings.LINE_SENDER_TASK_SECONDS)
    batch_size = settings.LINE_SEND_BATCH_SIZE
    totals = defaultdict(int)
    unused_before = _pacers.unused()
    with ThreadPoolExecutor(max_workers=settings.LINE_SEND_THREADS) as pool:
        in_flight = None
        while True:
            running = time.monotonic() < deadline
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
    totals["paced_slots_unused"] = _pacers.unused() - unused_before
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
