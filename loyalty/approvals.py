"""Four eyes on stage rules: publishing a version re-stages every customer, so it is a change request.

Kind `stage_rules.publish` (registered in LoyaltyConfig.ready): payload {"definition": <validated>, "note": str};
the approver sees the current and proposed definitions and `stage_rules_preview` (how many customers move
between which stages); approving calls `rules_version_publish`, whose version row names the requester
(created_by) and, in its note, the request and the approver. The fingerprint is the latest version number: a
version published meanwhile makes the request stale.
"""

from __future__ import annotations

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from mercari_ops.common.approvals import change_request_create, register_change_kind
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.formatting import yen
from mercari_ops.common.models import ChangeRequest

from .models import StageRuleVersion
from .rules import DEFAULT_DEFINITION, definition_validate
from .services import rules_version_publish
from .services.rules_preview import stage_rules_preview

PUBLISH = "stage_rules.publish"
TARGET_TYPE = "loyalty.stageruleversion"


def _latest() -> StageRuleVersion | None:
    return StageRuleVersion.objects.order_by("-version").first()


def _fingerprint(*, target_id: str, payload: dict) -> str:
    latest = _latest()
    return f"v{latest.version if latest else 0}"


def _describe(*, target_id: str, payload: dict):
    latest = _latest()
    current = latest.definition if latest else DEFAULT_DEFINITION
    if payload["definition"] == current:
        raise ValidationFailed(_("these rules are the same as the current version: nothing to publish"),
                               "definition")
    label = _("stage rules v%(n)s (replacing v%(m)s)") % {"n": (latest.version + 1) if latest else 1,
                                                          "m": latest.version if latest else 0}
    return label, current, payload["definition"]


def _preview(*, target_id: str, payload: dict) -> dict:
    return stage_rules_preview(definition=payload["definition"])


def _apply(*, change: ChangeRequest) -> None:
    note = change.payload.get("note", "")
    suffix = f"change request #{change.pk}, approved by {change.decided_by}"
    rules_version_publish(definition=change.payload["definition"], by=change.requested_by,
                          note=f"{note} ({suffix})" if note else suffix)


def render_preview(figures: dict) -> str:
    """The approver's figures: customers moving up/down per stage, by name, as a table and a bar chart (the same
    fragment as the rules form's Preview). Stage keys come back from JSON as strings: made ints again."""
    from django.template.loader import render_to_string

    from .admin_preview import preview_context  # an admin module: imported when a page is drawn

    if figures.get("error") or "per_stage_before" not in figures:
        return render_to_string("admin/loyalty/stageruleversion/preview_fragment.html",
                                {"error": figures.get("error") or _("no preview figures")})
    preview = {**figures, **{key: {int(stage): value for stage, value in (figures.get(key) or {}).items()}
                             for key in ("per_stage_before", "per_stage_after", "stage_names")}}
    return render_to_string("admin/loyalty/stageruleversion/preview_fragment.html", preview_context(preview))


def format_value(key: str, value) -> str | None:
    """A rules diff value: thresholds in yen or counts ("stages.1.thresholds.buy_amount")."""
    leaf = key.rsplit(".", 1)[-1]
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    if leaf.endswith("_amount"):
        return yen(value)
    if leaf == "window_months":
        return ngettext("%(n)s month", "%(n)s months", value) % {"n": value}
    return None


def stage_rules_publish_request(*, definition, note: str = "", by: str, request=None) -> ChangeRequest:
    """What the rules form does instead of publishing: validate, then ask an approver (ValidationFailed when
    the definition is invalid or the same as the rules in force)."""
    cleaned = definition_validate(definition)
    return change_request_create(kind=PUBLISH, payload={"definition": cleaned, "note": note[:250]},
                                 requested_by=by, request=request, note=note, summary=_("Publish stage rules"))


def register() -> None:
    register_change_kind(PUBLISH, label=gettext_lazy("Publish stage rules"), target_type=TARGET_TYPE,
                         describe=_describe, fingerprint=_fingerprint, apply=_apply, preview=_preview,
                         render_preview=render_preview, format_value=format_value)
