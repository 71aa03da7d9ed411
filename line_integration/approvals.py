"""Four eyes on mass LINE sends: the admin's test message to more than CHANGE_REQUEST_MASS_THRESHOLD linked
users is a change request (`line.test_message_send`, payload {"customer_ids": [...]}); at or below it is sent
at once and audited. The fingerprint is which of those customers are still linked: a change of that makes
the request stale.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mercari_ops.common.approvals import (
    change_request_create,
    mass_threshold,
    register_change_kind,
    state_fingerprint,
)
from mercari_ops.common.audit import audit_record
from mercari_ops.common.models import ChangeRequest

from . import services
from .models import LineUser, OutboundMessage

KIND = "line.test_message_send"


def _linked(customer_ids: list[str]) -> list[str]:
    return sorted(LineUser.objects.filter(status=LineUser.Status.LINKED, customer_id__in=customer_ids)
                  .values_list("customer_id", flat=True).distinct())


def test_messages_send(*, customer_ids: list[str], by: str, request=None, note: str = "") -> int:
    """Queue one test message per customer (through the normal path and its limits), audited. Returns the
    number queued."""
    with transaction.atomic():
        sent = 0
        for customer_id in customer_ids:
            status, _message = services.test_message_send(customer_id=customer_id)
            sent += status != OutboundMessage.Status.SKIPPED
        targets = ",".join(customer_ids)
        audit_record(action="line.test_message_send", target_type="line_integration.lineuser",
                     # the column holds 100 characters (a longer list overflowed it and failed the send)
                     target_id=targets if len(targets) <= 100 else targets[:96] + ",...",
                     after={"customers": len(customer_ids), "queued": sent}, request=request, actor=by or None,
                     note=note)
    return sent


def test_messages_start(admin, request, customer_ids: list[str]) -> int | None:
    """The admin action: above the threshold a change request (None returned), else send now."""
    customer_ids = sorted(set(customer_ids))
    by = request.user.get_username()
    if len(customer_ids) <= mass_threshold():
        return test_messages_send(customer_ids=customer_ids, by=by, request=request)
    with transaction.atomic():
        change = change_request_create(kind=KIND, payload={"customer_ids": customer_ids}, requested_by=by,
                                       request=request,
                                       summary=_("LINE test message to %(n)s users") % {"n": len(customer_ids)})
    admin.message_user(request, _("%(n)s recipients is more than %(max)s: this is change request #%(id)s, sent "
                                  "when another person with the approver role approves it.")
                       % {"n": len(customer_ids), "max": mass_threshold(), "id": change.pk}, messages.WARNING)
    return None


def _fingerprint(*, target_id: str, payload: dict) -> str:
    return state_fingerprint(_linked(payload["customer_ids"]))


def _describe(*, target_id: str, payload: dict):
    linked = _linked(payload["customer_ids"])
    return (_("%(n)s linked LINE users") % {"n": len(linked)}, {"recipients": len(linked)},
            {"action": "send a LINE test message", "recipients": len(linked)})


def _preview(*, target_id: str, payload: dict) -> dict:
    return {"recipients": len(_linked(payload["customer_ids"])), "threshold": mass_threshold()}


def _apply(*, change: ChangeRequest) -> None:
    sent = test_messages_send(customer_ids=_linked(change.payload["customer_ids"]), by=change.decided_by,
                              note=f"change request #{change.pk} by {change.requested_by}")
    change.preview = {**change.preview, "queued": sent}


def register() -> None:
    register_change_kind(KIND, label=gettext_lazy("Send a LINE test message to many users"),
                         target_type="line_integration.lineuser", describe=_describe, fingerprint=_fingerprint,
                         preview=_preview, apply=_apply)
