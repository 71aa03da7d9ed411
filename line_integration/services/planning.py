"""Planning: queued messages -> LineRequests (a push, or a multicast of up to 500 identical messages).

Each request is made once, with its exact body and a new X-Line-Retry-Key, so every later attempt
(sender.py) repeats the identical request. `planned_cancel` takes a user who blocked the account or
was unlinked out of requests LINE has not seen yet.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from ..models import LineRequest, MessageTemplate, OutboundMessage
from . import delivery_sql
from .templates import RenderError, template_render

MULTICAST_MAX = 500


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


def _messages_set(changes: list[tuple[int, str, int | None, str]]) -> None:
    """Write (message id, status, request id, reason) for each message."""
    if changes:
        delivery_sql.messages_set(changes=changes)
