"""Proactive delivery: accept (Braze, line_notify), plan into LINE requests, send under the global limits.

Life of a message: `queued` (one row per dispatch_id + user_id) -> `planned` into a
LineRequest (a push, or a multicast of up to 500 identical rendered messages) ->
`sent` / `failed`. The LineRequest keeps the exact body and its X-Line-Retry-Key,
so every retry (after a 429, a 5xx, a timeout or a killed worker whose lease
expired) is the identical request and LINE delivers it at most once.

By area: accepting messages here; planning them into requests in planning.py; sending in sender.py,
paced by pacing.py; the SQL of all three in delivery_sql.py. The public names of planning and sending
are importable from here too.
"""

from __future__ import annotations

import json
import logging
import uuid

from django.utils import timezone, translation
from django.utils.translation import gettext

from mercari_ops.common.enqueue import enqueue_after_commit
from mercari_ops.common.schema import Dict, Schema, Str

from ..models import OutboundMessage
from ..selectors import line_user_linked
from ..text_length import utf16_truncate
from . import delivery_sql
from .planning import MULTICAST_MAX, outbound_plan, planned_cancel  # noqa: F401
from .sender import message_send_now, requests_send_due, sender_run, work_pending  # noqa: F401
from .templates import RenderError, template_names, template_render, template_save  # noqa: F401

logger = logging.getLogger(__name__)

BRAZE_SCHEMA = Schema({
    "user_id": Str(max_length=64), "dispatch_id": Str(max_length=200),
    "campaign_id": Str(max_length=200, required=False), "template": Str(max_length=64), "params": Dict(required=False),
})



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


def braze_answer(status: str, reason: str) -> dict:
    """The webhook's 202 body for a recorded message."""
    if status == OutboundMessage.Status.SKIPPED:
        return {"status": "skipped", "reason": reason}
    return {"status": "queued"}


def line_notify(*, customer_id: str, text: str, idempotency_key: str) -> bool:
    """Queue one push of `text` to the customer's LINE, once per idempotency_key (see interfaces.md).

    True when the customer has a linked, not-blocked LINE account (the push is queued or
    was queued before under this key); False otherwise (the caller notifies another way).
    """
    if not line_user_linked(customer_id=customer_id):  # no row for customers LINE cannot reach
        return False
    status, _ = message_enqueue(dispatch_id=f"notify:{idempotency_key}", user_id=customer_id,
                                params={"messages": [{"type": "text", "text": utf16_truncate(text)}]},
                                kind=OutboundMessage.Kind.NOTIFY)
    if status == OutboundMessage.Status.SKIPPED:
        return False
    _kick_after_commit()
    return True


def test_message_send(*, customer_id: str, text: str | None = None) -> tuple[str, str]:
    """The admin's "send test message": a one-off push through the normal path (limits, retries, records)."""
    if text is None:
        with translation.override("ja"):  # the customer reads it, whatever the operator's language
            text = gettext("Test message from Mercari Ops")
    status = message_enqueue(dispatch_id=f"test:{uuid.uuid4()}", user_id=customer_id,
                             params={"messages": [{"type": "text", "text": text}]}, kind=OutboundMessage.Kind.TEST)
    _kick_after_commit()
    return status


def _kick_after_commit() -> None:
    from ..tasks import line_send_due

    enqueue_after_commit(line_send_due)  # broker down: the line.kick_senders beat starts the senders
