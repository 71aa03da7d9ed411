"""audit_record: the one way to write the audit log (mercari_ops.common.models.AuditLogEntry)."""

from __future__ import annotations

import json
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from .models import AuditLogEntry


def _client_ip(request) -> str | None:
    if request is None:
        return None
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    ip = forwarded.split(",")[0].strip() if forwarded else request.META.get("REMOTE_ADDR")
    return ip or None


def _jsonable(value: Any) -> Any:
    return None if value is None else json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def audit_record(*, action: str, target: Any = None, target_type: str = "", target_id: str = "",
                 before: dict | None = None, after: dict | None = None, request=None, actor: str | None = None,
                 note: str = "") -> AuditLogEntry:
    """Record who did what to which object, from where. Call it inside the transaction of the change.

    `target` is a model instance (type, id and repr taken from it) or None with target_type/target_id given.
    `actor` defaults to the request's user; without both it is "system" (a task, a command).
    """
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
        target_repr = str(target)[:200]
    else:
        target_repr = ""
    if actor is None:
        user = getattr(request, "user", None)
        actor = user.get_username() if getattr(user, "is_authenticated", False) else "system"
    return AuditLogEntry.objects.create(
        actor=actor, actor_ip=_client_ip(request), action=action, target_type=target_type,
        target_id=str(target_id), target_repr=target_repr, before=_jsonable(before), after=_jsonable(after),
        note=note,
    )
