"""Four eyes: a change that moves money or messages is requested by one user and applied once another approves.

The requester's screen calls `change_request_create` instead of the change; an approver (permission
`common.approve_change`: the `approvers` group, superusers) calls `change_request_approve`, which re-checks the
target's fingerprint and applies the change through the kind's `apply` in the same transaction, or
`change_request_reject`. Every step is written to the audit log, in the transaction of the step.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from ..audit import audit_record
from ..errors import Conflict, DomainError
from ..models import ChangeRequest
from .registry import change_kind_get

APPROVE_PERMISSION = "common.approve_change"


class ApprovalRefused(Conflict):
    """The decision cannot be taken (own request, no permission, already decided, failed to apply)."""


class ChangeRequestStale(ApprovalRefused):
    """The target changed since the request: the request is marked stale and nothing is applied."""


def can_approve(user) -> bool:
    """Approvers decide; superusers hold every permission, so they are approvers too."""
    return bool(getattr(user, "is_authenticated", False) and user.has_perm(APPROVE_PERMISSION))


def mass_threshold() -> int:
    """Above this many items a re-send, replay or discard needs a second person's approval."""
    return settings.CHANGE_REQUEST_MASS_THRESHOLD


def _audit(change: ChangeRequest, action: str, *, actor: str, request=None, before=None, after=None,
           note: str = "") -> None:
    text = f"change request #{change.pk} ({change.kind}): {change.summary}" + (f" -- {note}" if note else "")
    audit_record(action=action, target_type=change.target_type, target_id=change.target_id, before=before,
                 after=after, request=request, actor=actor, note=text)


@transaction.atomic
def change_request_create(*, kind: str, payload: dict, requested_by: str, target_id: str = "", note: str = "",
                          summary: str = "", request=None) -> ChangeRequest:
    """Record a proposed change with its diff, preview figures and the target's fingerprint; nothing is applied.

    The same proposal still pending (same kind, target, payload) is returned instead of a second request.
    """
    entry = change_kind_get(kind)
    target_id = str(target_id)
    pending = ChangeRequest.objects.filter(kind=kind, target_id=target_id, status=ChangeRequest.Status.PENDING,
                                           payload=payload).first()
    if pending is not None:
        return pending
    target_repr, before, after = entry.describe(target_id=target_id, payload=payload)
    preview: dict = {}
    if entry.preview is not None:
        try:
            preview = entry.preview(target_id=target_id, payload=payload) or {}
        except DomainError as exc:  # the approver sees why there are no figures
            preview = {"error": exc.message}
    change = ChangeRequest.objects.create(
        kind=kind, target_type=entry.target_type, target_id=target_id, target_repr=str(target_repr)[:200],
        summary=(summary or str(entry.label))[:300], payload=payload, before=before, after=after, preview=preview,
        fingerprint=entry.fingerprint(target_id=target_id, payload=payload), requested_by=requested_by,
        request_note=note,
    )
    _audit(change, "change_request.create", actor=requested_by, request=request, before=before, after=after,
           note=note)
    return change


def _decider_check(change: ChangeRequest, user) -> str:
    username = user.get_username()
    if change.status != ChangeRequest.Status.PENDING:
        raise ApprovalRefused(_("this change request is already %(status)s") % {"status": change.get_status_display()},
                              "status")
    if not can_approve(user):
        raise ApprovalRefused(_("only an approver may decide a change request"), "decided_by")
    if username == change.requested_by:
        raise ApprovalRefused(_("you cannot decide your own change request; another approver must"), "decided_by")
    return username


def change_request_approve(*, request_id: int, by, note: str = "", request=None) -> ChangeRequest:
    """Approve and apply in one transaction. Refuses (ApprovalRefused) without changing anything when `by` is
    the requester or no approver; a stale request is marked stale (ChangeRequestStale) and a change the app
    refuses is marked failed -- in both cases nothing of the change is applied."""
    refusal: ApprovalRefused | None = None
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=request_id)
        username = _decider_check(change, by)
        entry = change_kind_get(change.kind)
        change.decided_by, change.decided_at, change.decision_note = username, timezone.now(), note
        if entry.fingerprint(target_id=change.target_id, payload=change.payload) != change.fingerprint:
            change.status = ChangeRequest.Status.STALE
            change.error = str(_("the target changed since the request; nothing was applied, request it again"))
            _audit(change, "change_request.stale", actor=username, request=request, note=note)
            refusal = ChangeRequestStale(change.error, "fingerprint")
        else:
            change.status = ChangeRequest.Status.APPROVED
            try:
                with transaction.atomic():  # a savepoint: a refused apply leaves nothing behind
                    entry.apply(change=change)
            except DomainError as exc:
                change.status, change.error = ChangeRequest.Status.FAILED, exc.message
                _audit(change, "change_request.failed", actor=username, request=request, note=exc.message)
                refusal = ApprovalRefused(_("could not apply: %(error)s") % {"error": exc.message}, exc.field)
            else:
                change.status, change.applied_at = ChangeRequest.Status.APPLIED, timezone.now()
                _audit(change, "change_request.approve", actor=username, request=request, before=change.before,
                       after=change.after, note=f"requested by {change.requested_by}" + (f"; {note}" if note else ""))
        change.save()
    if refusal is not None:
        raise refusal
    return change


@transaction.atomic
def change_request_reject(*, request_id: int, by, note: str = "", request=None) -> ChangeRequest:
    """Decline: nothing is applied; the decision and its reason are recorded."""
    change = ChangeRequest.objects.select_for_update().get(pk=request_id)
    username = _decider_check(change, by)
    change.status, change.decided_by, change.decided_at = ChangeRequest.Status.REJECTED, username, timezone.now()
    change.decision_note = note
    change.save()
    try:
        entry = change_kind_get(change.kind)
    except LookupError:  # a kind no longer registered: the request and the audit log still record it
        entry = None
    if entry is not None and entry.on_reject is not None:
        entry.on_reject(change=change)  # the app's version history names the rejection
    _audit(change, "change_request.reject", actor=username, request=request, before=change.before,
           after=change.after, note=f"requested by {change.requested_by}" + (f"; {note}" if note else ""))
    return change


@transaction.atomic
def change_request_withdraw(*, request_id: int, by, request=None) -> ChangeRequest:
    """The requester takes back a pending request."""
    change = ChangeRequest.objects.select_for_update().get(pk=request_id)
    username = by.get_username()
    if change.status != ChangeRequest.Status.PENDING:
        raise ApprovalRefused(_("only a pending change request can be withdrawn"), "status")
    if username != change.requested_by:
        raise ApprovalRefused(_("only the requester can withdraw a change request"), "requested_by")
    change.status, change.decided_by, change.decided_at = ChangeRequest.Status.WITHDRAWN, username, timezone.now()
    change.save()
    _audit(change, "change_request.withdraw", actor=username, request=request)
    return change


def change_requests_for(*, target_type: str, target_id: str, limit: int = 50) -> list[ChangeRequest]:
    """The change requests of one object, newest first (a campaign's history shows them)."""
    return list(ChangeRequest.objects.filter(target_type=target_type, target_id=str(target_id))[:limit])


def change_requests_decided(*, kind: str, statuses: tuple[str, ...] = (ChangeRequest.Status.REJECTED,),
                            limit: int = 50) -> list[ChangeRequest]:
    """Proposals of one kind that were decided without being applied (rejected by default), newest decision first:
    an app's version history lists them beside its versions."""
    rows = ChangeRequest.objects.filter(kind=kind, status__in=statuses).order_by("-decided_at", "-id")
    return list(rows[:limit])


def change_requests_pending_count(*, target_type: str, target_id: str | None = None) -> int:
    rows = ChangeRequest.objects.filter(target_type=target_type, status=ChangeRequest.Status.PENDING)
    return (rows if target_id is None else rows.filter(target_id=str(target_id))).count()
