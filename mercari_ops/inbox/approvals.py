"""Four eyes on mass replays and discards of the inbox: above CHANGE_REQUEST_MASS_THRESHOLD items an action
becomes a change request; at or below it runs at once, audited.

Kinds (registered when the inbox admin loads, which every process does at start): `inbox.event_replay`,
`inbox.event_discard`, `inbox.letter_replay`, `inbox.letter_discard`; payload {"pks": [...]}. The fingerprint
is the (pk, status) of every item: an item processed, replayed or discarded meanwhile makes the request stale.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Model
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
from .models import DeadLetter, InboxEvent


@dataclass(frozen=True)
class MassAction:
    kind: str
    model: type[Model]
    verb: str
    label: str
    run: Callable[[int, str], str]  # (pk, by) -> outcome name


def _event_replay(pk: int, by: str) -> str:
    return services.inbox_event_replay(event_pk=pk).outcome.value


def _event_discard(pk: int, by: str) -> str:
    services.inbox_event_discard(event_pk=pk, by=by)
    return "discarded"


def _letter_replay(pk: int, by: str) -> str:
    return services.dead_letter_replay(letter_pk=pk, by=by).outcome.value


def _letter_discard(pk: int, by: str) -> str:
    services.dead_letter_discard(letter_pk=pk, by=by)
    return "discarded"


ACTIONS = {action.kind: action for action in (
    MassAction("inbox.event_replay", InboxEvent, "replay", gettext_lazy("Replay inbox events"), _event_replay),
    MassAction("inbox.event_discard", InboxEvent, "discard", gettext_lazy("Discard inbox events"), _event_discard),
    MassAction("inbox.letter_replay", DeadLetter, "replay", gettext_lazy("Replay dead letters"), _letter_replay),
    MassAction("inbox.letter_discard", DeadLetter, "discard", gettext_lazy("Discard dead letters"),
               _letter_discard),
)}


def _items(action: MassAction, payload: dict) -> list[tuple[int, str, str]]:
    return list(action.model.objects.filter(pk__in=payload["pks"]).order_by("pk").values_list("pk", "status",
                                                                                                "topic"))


def _kind_functions(action: MassAction):
    def fingerprint(*, target_id: str, payload: dict) -> str:
        return state_fingerprint([(pk, status) for pk, status, _ in _items(action, payload)])

    def describe(*, target_id: str, payload: dict):
        items = _items(action, payload)
        before = {"items": len(items), "status": dict(Counter(status for _, status, _ in items)),
                  "topic": dict(Counter(topic for _, _, topic in items))}
        return (f"{len(items)} {action.model._meta.verbose_name_plural}", before,
                {"action": action.verb, "items": len(items)})

    def preview(*, target_id: str, payload: dict) -> dict:
        items = _items(action, payload)
        return {"items": len(items), "threshold": mass_threshold(),
                "first_ids": ", ".join(str(pk) for pk, _, _ in items[:20])}

    def apply(*, change: ChangeRequest) -> None:
        outcomes = mass_run(action=action, pks=change.payload["pks"], by=change.decided_by,
                            note=f"change request #{change.pk} by {change.requested_by}")
        change.preview = {**change.preview, "outcome": outcomes}

    return fingerprint, describe, preview, apply


def mass_run(*, action: MassAction, pks: list[int], by: str, request=None, note: str = "") -> dict[str, int]:
    """Run the action on every item now, then write one audit entry with the outcomes."""
    outcomes: Counter[str] = Counter()
    for pk in pks:
        outcomes[action.run(pk, by)] += 1
    targets = ",".join(map(str, pks))
    audit_record(action=action.kind, target_type=action.model._meta.label_lower,
                 # the column holds 100 characters (twenty long IDs overflowed it after the action had run)
                 target_id=targets if len(targets) <= 100 else targets[:96] + ",...",
                 after={"items": len(pks), "outcomes": dict(outcomes)}, request=request,
                 actor=by or None, note=note)
    return dict(outcomes)


def mass_action_start(*, kind: str, pks: list[int], by: str, request=None) -> tuple[ChangeRequest | None, dict]:
    """Above the threshold: a change request (returned, nothing run). Otherwise: run now, audited."""
    action = ACTIONS[kind]
    pks = sorted(set(pks))
    if len(pks) > mass_threshold():
        with transaction.atomic():
            return change_request_create(kind=kind, payload={"pks": pks}, requested_by=by, request=request,
                                         summary=f"{action.label}: {len(pks)}"), {}
    return None, mass_run(action=action, pks=pks, by=by, request=request)


def register() -> None:
    for action in ACTIONS.values():
        fingerprint, describe, preview, apply = _kind_functions(action)
        register_change_kind(action.kind, label=action.label, target_type=action.model._meta.label_lower,
                             describe=describe, fingerprint=fingerprint, preview=preview, apply=apply)


def mass_gate(admin, request, pks: list[int], kind: str) -> bool:
    """For an admin action: above the threshold record a change request, tell the user and return True (the
    action stops there); at or below it return False and the action runs as before."""
    from django.contrib import messages
    from django.utils.translation import gettext as _

    if len(pks) <= mass_threshold():
        return False
    change, _outcomes = mass_action_start(kind=kind, pks=pks, by=request.user.get_username(), request=request)
    admin.message_user(request, _("%(n)s items is more than %(max)s: this is change request #%(id)s, run when "
                                  "another person with the approver role approves it.")
                       % {"n": len(pks), "max": mass_threshold(), "id": change.pk}, messages.WARNING)
    return True
