"""Braze webhook acceptance: strict validation, then one insert, alone or with group commit.

`braze_clean` parses the body with `json_loads_strict` (UTF-8, bounded depth, no NUL or lone surrogate
anywhere: a 400 naming the field, e.g. `params.search_id`, instead of a 503 or 500 at the insert) and
validates it against BRAZE_SCHEMA. `braze_accept` records one message per request. Under a burst, a
threaded web process has many requests in flight; `braze_accept_grouped` validates in the request thread,
then queues the cleaned message for the process's group commit (mercari_ops.common.groupcommit: the first
waiting request leads and records everything that queued up in one multi-row `INSERT ... ON CONFLICT DO
NOTHING` joined to the LINE user and one commit; a group the database refuses is recorded again message by
message, so only the culprit fails). The answer (202 queued or skipped) is given after that commit, exactly
as on the one-by-one path.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.groupcommit import group_committer
from mercari_ops.common.jsonsafe import json_loads_strict

from .delivery import BRAZE_SCHEMA, braze_answer, messages_accept
from .templates import template_names


def braze_clean(*, body: bytes) -> dict:
    """The validated webhook body, or ValidationFailed naming the bad field (400)."""
    data = json_loads_strict(body, field="body")
    if not isinstance(data, dict):
        raise ValidationFailed("body must be a JSON object", "body")
    cleaned = BRAZE_SCHEMA.clean(data, "")
    if cleaned["template"] not in template_names():
        raise ValidationFailed(f"unknown template {cleaned['template']!r}", "template")
    return cleaned


def braze_accept(*, body: bytes) -> dict:
    """Validate a Braze webhook body and record its message. Raises ValidationFailed naming the field."""
    return braze_answer(*messages_accept([braze_clean(body=body)])[0])


def braze_enqueue_group(messages: list[dict]) -> list[dict]:
    """Record cleaned Braze messages in one transaction; the webhook answer of each, in order."""
    with transaction.atomic():
        return [braze_answer(status, reason) for status, reason in messages_accept(messages)]


def braze_accept_grouped(*, body: bytes) -> dict:
    """The webhook's service with group commit (see the module docstring)."""
    cleaned = braze_clean(body=body)
    committer = group_committer("braze", braze_enqueue_group, max_group=settings.GROUP_COMMIT_MAX)
    return committer.submit(cleaned, timeout=settings.GROUP_COMMIT_TIMEOUT_SECONDS)
