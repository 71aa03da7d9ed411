"""Four eyes in the campaign admin: what the change form and the activate action do instead of the change.

A draft stays directly editable. Saving a campaign that is not a draft (active, or ended but still settling)
records a `campaign.change` request with what the form proposes and leaves the campaign as it is; the
activate action records `campaign.activate` requests. An approver applies them from the change request page
(mercari_ops/common/approvals/admin.py). Ending a campaign stays one person's emergency stop.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from mercari_ops.common.approvals import change_requests_for
from mercari_ops.common.errors import DomainError

from ..approvals import ACTIVATE, CHANGE, TARGET_TYPE, campaign_change_request, campaign_form_payload
from ..models import Campaign, CampaignStageRate

FORM_FIELDS = ("name", "starts_at", "ends_at", "upper_limit", "user_filters", "payment_filters")
CHANGE_REQUESTS_FIELDSET = (gettext_lazy("Change requests (four eyes)"),
                            {"fields": ["change_requests_table"], "classes": ["collapse"]})


def save_model_gate(request, obj, change: bool) -> bool:
    """True when the saved campaign is not a draft: nothing is saved, save_related makes a change request."""
    if not change:
        return False
    stored = Campaign.objects.get(pk=obj.pk)
    if stored.status == Campaign.Status.DRAFT:
        return False
    request._campaign_gate = {"campaign": stored, "request": None}
    return True


def save_related_gate(request, form, formsets) -> bool:
    """Record the change request of a gated save (True), or do nothing (False: save as usual)."""
    gate = getattr(request, "_campaign_gate", None)
    if gate is None:
        return False
    rates = None
    for formset in formsets:
        # nothing of the inlines is saved; the admin's change message reads these lists
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is CampaignStageRate:
            rates = [(f.cleaned_data["stage_from"], f.cleaned_data["stage_to"], f.cleaned_data["rate"])
                     for f in formset.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
    fields = {name: form.cleaned_data[name] for name in FORM_FIELDS if name in form.cleaned_data}
    payload = campaign_form_payload(campaign=gate["campaign"], fields=fields, rates=rates)
    if payload["fields"] or payload["rates"] is not None:
        gate["request"] = campaign_change_request(campaign_id=gate["campaign"].pk, kind=CHANGE, payload=payload,
                                                  by=request.user.get_username(), request=request)
    return True


def gated_response(admin, request):
    """The answer to a gated save: where the change request is, or that nothing differed."""
    gate = getattr(request, "_campaign_gate", None)
    if gate is None:
        return None
    change = gate["request"]
    if change is None:
        admin.message_user(request, _("Nothing changed."), messages.INFO)
        return HttpResponseRedirect(reverse("admin:campaigns_campaign_change", args=[gate["campaign"].pk]))
    admin.message_user(request, _("The campaign is live, so this change is a change request (#%(id)s): it takes "
                                  "effect when another person with the approver role approves it.")
                       % {"id": change.pk}, messages.WARNING)
    return HttpResponseRedirect(reverse("admin:common_changerequest_change", args=[change.pk]))


def activation_request(admin, request, queryset) -> None:
    """The activate action: one change request per draft; an approver activates."""
    made = []
    for campaign in queryset:
        if campaign.status != Campaign.Status.DRAFT:
            admin.message_user(request, _("%(name)s: only a draft can be activated") % {"name": campaign.name},
                               messages.ERROR)
            continue
        try:
            made.append(campaign_change_request(campaign_id=campaign.pk, kind=ACTIVATE, payload={},
                                                by=request.user.get_username(), request=request))
        except DomainError as exc:
            admin.message_user(request, _("%(name)s: %(problem)s") % {"name": campaign.name, "problem": exc.message},
                               messages.ERROR)
    if made:
        admin.message_user(request, _("Activation requested (%(ids)s): another person with the approver role "
                                      "must approve before the campaign goes live.")
                           % {"ids": ", ".join(f"#{change.pk}" for change in made)}, messages.WARNING)


def change_requests_table(obj) -> str:
    rows = change_requests_for(target_type=TARGET_TYPE, target_id=str(obj.pk)) if obj and obj.pk else []
    if not rows:
        return "\u2014"
    body = format_html_join("", '<tr><td><a href="{}">#{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>'
                                "<td>{}</td><td>{}</td></tr>",
                            ((reverse("admin:common_changerequest_change", args=[c.pk]), c.pk, c.summary,
                              c.get_status_display(), c.requested_by,
                              f"{timezone.localtime(c.requested_at):%Y-%m-%d %H:%M}",
                              c.decided_by or "\u2014", c.decision_note or c.error or "") for c in rows))
    head = format_html_join("", "<th>{}</th>", ((h,) for h in (
        "#", _("change"), _("status"), _("requested by"), _("at"), _("decided by"), _("note"))))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)
