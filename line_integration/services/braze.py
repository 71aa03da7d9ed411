"""Braze webhook acceptance with group commit: concurrent requests of one web process share one INSERT.

`braze_accept` (delivery.py) validates and records one message per request. Under a
burst, a threaded web process has many requests in flight; `braze_accept_grouped`
validates in the request thread, then queues the cleaned message for the process's
group commit (mercari_ops.common.groupcommit: the first waiting request leads and
records everything that queued up in one multi-row `INSERT ... ON CONFLICT DO NOTHING` joined to the LINE
user and one commit). The answer (202 queued or skipped) is given after that commit,
exactly as on the one-by-one path.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from mercari_ops.common.groupcommit import group_committer

from ..models import OutboundMessage
from .delivery import braze_answer, braze_clean, braze_enqueue

_GROUP_INSERT_SQL = """
INSERT INTO line_integration_outboundmessage
    (dispatch_id, user_id, campaign_id, template, params, line_user_id, kind, status, reason, created_at)
SELECT e.dispatch_id, e.user_id, e.campaign_id, e.template, e.params::jsonb, COALESCE(u.line_user_id, ''), %s,
       CASE WHEN u.status = 'linked' THEN 'queued' ELSE 'skipped' END,
       CASE WHEN u.status = 'linked' THEN '' WHEN u.status = 'blocked' THEN 'blocked' ELSE 'not_linked' END,
       %s
FROM unnest(%s::varchar[], %s::varchar[], %s::varchar[], %s::varchar[], %s::text[])
     AS e(dispatch_id, user_id, campaign_id, template, params)
LEFT JOIN line_integration_lineuser u ON u.customer_id = e.user_id
ON CONFLICT (dispatch_id, user_id) DO NOTHING
RETURNING dispatch_id, user_id, status, reason
"""


def braze_enqueue_group(messages: list[dict]) -> list[dict]:
    """Record cleaned Braze messages in one transaction; the webhook answer of each, in order."""
    if connection.vendor != "postgresql":  # SQLite: one statement per message, still one commit
        with transaction.atomic():
            return [braze_enqueue(message) for message in messages]
    columns = ([m["dispatch_id"] for m in messages], [m["user_id"] for m in messages],
               [m.get("campaign_id", "") for m in messages], [m["template"] for m in messages],
               [json.dumps(m.get("params") or {}) for m in messages])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_GROUP_INSERT_SQL, [OutboundMessage.Kind.BRAZE, timezone.now(), *columns])
        outcome = {(dispatch_id, user_id): (status, reason) for dispatch_id, user_id, status, reason in cursor}
        repeats = [(m["dispatch_id"], m["user_id"]) for m in messages
                   if (m["dispatch_id"], m["user_id"]) not in outcome]
        if repeats:  # a repeat of an earlier (dispatch_id, user_id): answered as the first time
            cursor.execute(
                "SELECT o.dispatch_id, o.user_id, o.status, o.reason FROM line_integration_outboundmessage o "
                "JOIN unnest(%s::varchar[], %s::varchar[]) AS r(dispatch_id, user_id) "
                "ON o.dispatch_id = r.dispatch_id AND o.user_id = r.user_id",
                [[d for d, _ in repeats], [u for _, u in repeats]],
            )
            outcome.update({(d, u): (s, r) for d, u, s, r in cursor})
    return [braze_answer(*outcome.get((m["dispatch_id"], m["user_id"]), ("queued", ""))) for m in messages]


def braze_accept_grouped(*, body: bytes) -> dict:
    """The webhook's service with group commit (see the module docstring)."""
    cleaned = braze_clean(body=body)
    committer = group_committer("braze", braze_enqueue_group, max_group=settings.GROUP_COMMIT_MAX)
    return committer.submit(cleaned, timeout=settings.GROUP_COMMIT_TIMEOUT_SECONDS)
