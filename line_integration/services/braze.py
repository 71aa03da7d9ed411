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

from django.conf import settings
from django.db import transaction

from mercari_ops.common.groupcommit import group_committer

from .delivery import braze_answer, braze_clean, messages_accept


def braze_enqueue_group(messages: list[dict]) -> list[dict]:
    """Record cleaned Braze messages in one transaction; the webhook answer of each, in order."""
    with transaction.atomic():
        return [braze_answer(status, reason) for status, reason in messages_accept(messages)]


def braze_accept_grouped(*, body: bytes) -> dict:
    """The webhook's service with group commit (see the module docstring)."""
    cleaned = braze_clean(body=body)
    committer = group_committer("braze", braze_enqueue_group, max_group=settings.GROUP_COMMIT_MAX)
    return committer.submit(cleaned, timeout=settings.GROUP_COMMIT_TIMEOUT_SECONDS)
