"""Change kinds: what an app teaches core about one kind of change request, so core never imports apps.

An app registers its kinds at start (AppConfig.ready):

    register_change_kind("campaign.activate", label=_("Activate a campaign"), target_type="campaigns.campaign",
                         describe=..., fingerprint=..., apply=..., preview=...)

- describe(*, target_id, payload) -> (target_repr, before, after): the diff shown to the approver.
- fingerprint(*, target_id, payload) -> str: the target's current state; differs once the target changed.
- apply(*, change) -> None: make the change, inside the approving transaction (raise DomainError to refuse);
  `change` is the ChangeRequest (requested_by, decided_by and pk are there for the app's version history).
- preview(*, target_id, payload) -> dict (optional): figures for the approver (backtest, stage moves, counts);
  stored with the request, and read again while it is pending when `live_preview` (cheap reads only).
- render_preview(figures) -> SafeString (optional; built with format_html, a plain str is escaped): the
  figures as an approver reads them (tables, charts, names); without it, generic tables.
- format_value(key, value) -> str | None (optional): one diff value as the approver reads it (`key` is the
  dotted leaf, e.g. "rates.0.rate"); None falls back to the generic formatting (numbers, times, JSON).
- on_reject(*, change) -> None (optional): record the rejection in the app's own history, inside the
  rejecting transaction (the target itself must not change).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder


@dataclass(frozen=True)
class ChangeKind:
    kind: str
    label: str
    target_type: str
    describe: Callable[..., tuple[str, dict | None, dict | None]]
    fingerprint: Callable[..., str]
    apply: Callable[..., Any]
    preview: Callable[..., dict] | None = None
    live_preview: bool = False  # read again while pending (figures that a background job fills in later)
    render_preview: Callable[[dict], str] | None = None
    format_value: Callable[[str, Any], str | None] | None = None
    on_reject: Callable[..., Any] | None = None


_KINDS: dict[str, ChangeKind] = {}


def register_change_kind(kind: str, *, apply: Callable[..., Any], describe: Callable[..., tuple],
                         fingerprint: Callable[..., str], target_type: str, label: str = "",
                         preview: Callable[..., dict] | None = None, live_preview: bool = False,
                         render_preview: Callable[[dict], str] | None = None,
                         format_value: Callable[[str, Any], str | None] | None = None,
                         on_reject: Callable[..., Any] | None = None) -> ChangeKind:
    """Declare (or re-declare, e.g. on autoreload) one kind of change request."""
    entry = ChangeKind(kind=kind, label=label or kind, target_type=target_type, describe=describe,
                       fingerprint=fingerprint, apply=apply, preview=preview, live_preview=live_preview,
                       render_preview=render_preview, format_value=format_value, on_reject=on_reject)
    _KINDS[kind] = entry
    return entry


def change_kind_get(kind: str) -> ChangeKind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise LookupError(f"no change kind {kind!r} is registered") from None


def change_kinds() -> dict[str, ChangeKind]:
    return dict(_KINDS)


def state_fingerprint(value: Any) -> str:
    """A stable hash of any JSON-able state (dict keys sorted): the usual body of a kind's fingerprint."""
    text = json.dumps(value, cls=DjangoJSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
