"""Loyalty screens: customers (stage, window totals, changes, pins, "why this stage"), rules versions,
recomputation progress, stage changes and pins. Every write goes through loyalty.services."""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext, pgettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.admin_utils import pretty_json
from mercari_ops.common.approvals import change_requests_decided, change_requests_pending_count
from mercari_ops.common.audit import audit_record
from mercari_ops.common.dashboard import register_panel
from mercari_ops.common.enqueue import enqueue
from mercari_ops.common.errors import DomainError
from mercari_ops.common.formatting import number, yen
from mercari_ops.common.privacy_admin import PersonalDataAdminMixin
from mercari_ops.common.roles import can_see_pii

from . import services
from .admin_preview import rules_preview_urls
from .approvals import stage_rules_publish_request
from .customer_page import (
    change_reason_html,
    customer_why_context,
    metric_label,
    metric_value,
    stage_label_cheap,
    stage_list_filter,
)
from .models import Customer, MonthlyTotal, RecomputeJob, StageChange, StagePin, StageRuleVersion
from .rules import definition_validate
from .selectors import customer_explain, rules_active, stage_label


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _table(headers, rows):
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((c,) for c in row)),)
                                                 for row in rows))
    return format_html("<table><thead><tr>{}</tr></thead><tbody>{}</tbody></table>", head, body)


def _local(at) -> str:
    """A time in the business time zone (TIME_ZONE), as the admin writes its own fields."""
    return date_format(timezone.localtime(at), "SHORT_DATETIME_FORMAT") if at else ""


@admin.register(Customer)
class CustomerAdmin(PersonalDataAdminMixin, ReadOnlyMixin, admin.ModelAdmin):
    # A customer's spending totals (and the pages showing them) are payment details; pin reasons are free text.
    personal_fields = ("window_totals", "recent_changes", "pin_history", "why_link")
    list_display = ("customer_id", "stage_name", "rules_stage_name", "pin_floor_name", "pin_expires_at",
                    "stage_changed_at", "why_link")
    list_filter = (stage_list_filter("stage", _("stage")), stage_list_filter("rules_stage", _("rules stage")))
    search_fields = ("=customer_id",)
    show_full_result_count = False
    fields = ("customer_id", "stage_name", "rules_stage_name", "pin_floor_name", "pin_expires_at",
              "stage_changed_at", "created_at", "why_link", "window_totals", "recent_changes", "pin_history")
    readonly_fields = fields

    # Stages by name with their number ("Silver (20)"), from the rules in force.
    @admin.display(description=_("stage"), ordering="stage")
    def stage_name(self, obj):
        return stage_label_cheap(obj.stage)

    @admin.display(description=_("rules stage"), ordering="rules_stage")
    def rules_stage_name(self, obj):
        return stage_label_cheap(obj.rules_stage)

    @admin.display(description=_("pin floor"), ordering="pin_floor")
    def pin_floor_name(self, obj):
        return stage_label_cheap(obj.pin_floor)

    def get_urls(self):
        return [path("<int:pk>/why/", self.admin_site.admin_view(self.why_view), name="loyalty_customer_why")] + \
            super().get_urls()

    @admin.display(description=_("why this stage"))
    def why_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:loyalty_customer_why", args=[obj.pk]),
                           gettext("why this stage"))

    @admin.display(description=_("totals per window"))
    def window_totals(self, obj):
        explain = customer_explain(customer=obj)
        names = explain["metric_names"]
        window = gettext("rules window (last %(months)s months, from %(start)s)") % {
            "months": explain["ruleset"].window_months, "start": f"{explain['window_from']:%Y-%m}"}
        rows = [(window, *[metric_value(m, explain["metrics"][m]) for m in names]),
                (gettext("lifetime"), *[metric_value(m, explain["lifetime"][m]) for m in names])]
        return _table([gettext("window"), *[metric_label(m) for m in names]], rows)

    @admin.display(description=_("recent stage changes"))
    def recent_changes(self, obj):
        changes = obj.stage_changes.order_by("-at", "-id")[:20]
        ruleset = rules_active()
        headers = [gettext("at"), pgettext("stage change", "from"), pgettext("stage change", "to"), gettext("cause"),
                   gettext("rules version"), gettext("reason")]
        return _table(headers, [(_local(c.at), stage_label_cheap(c.from_stage), stage_label_cheap(c.to_stage),
                                 c.get_cause_display(), c.rule_version, change_reason_html(c.reason, ruleset=ruleset))
                                for c in changes])

    @admin.display(description=_("pins"))
    def pin_history(self, obj):
        headers = [gettext("floor"), gettext("reason"), gettext("expires"), gettext("by"), gettext("at"),
                   gettext("revoked")]
        return _table(headers, [
            (stage_label_cheap(p.floor), p.reason, _local(p.expires_at), p.created_by, _local(p.created_at),
             gettext("%(at)s by %(by)s") % {"at": _local(p.revoked_at), "by": p.revoked_by} if p.revoked_at else "")
            for p in obj.pins.order_by("-created_at")[:20]])

    def why_view(self, request, pk):
        customer = get_object_or_404(Customer, pk=pk)
        if not (self.has_view_permission(request, customer) and can_see_pii(request.user)):
            raise PermissionDenied
        page = customer_why_context(customer=customer)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "customer": customer,
                   **page, "title": _("Why %(customer)s has stage %(stage)s") % {
                       "customer": customer.customer_id, "stage": page["labels"]["effective"]}}
        return TemplateResponse(request, "admin/loyalty/customer_why.html", context)


@admin.register(MonthlyTotal)
class MonthlyTotalAdmin(PersonalDataAdminMixin, ReadOnlyMixin, admin.ModelAdmin):
    personal_fields = ("amount", "count", "amount_yen", "count_number")
    personal_str = True  # "c-00001 Paid 2026-11: ¥12,800 / 3"
    list_display = ("customer", "kind", "month", "amount_yen", "count_number")
    list_filter = ("kind",)
    search_fields = ("=customer__customer_id",)
    list_select_related = ("customer",)
    show_full_result_count = False

    @admin.display(description=_("amount"), ordering="amount")
    def amount_yen(self, obj):
        return yen(obj.amount)

    @admin.display(description=_("count"), ordering="count")
    def count_number(self, obj):
        return number(obj.count)


class RulesForm(forms.ModelForm):
    definition = forms.JSONField(label=_("definition"), widget=forms.Textarea(attrs={"rows": 30, "cols": 100}),
                                 help_text=_("window_months; stages in ascending order, each with name, combine "
                                             "('all': every threshold met, 'any': at least one) and thresholds over "
                                             "buy/sell/pay _amount/_count. The lowest stage has no thresholds."))

    class Meta:
        model = StageRuleVersion
        fields = ("definition", "note")

    def clean_definition(self):
        try:
            return definition_validate(self.cleaned_data["definition"])
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None  # the message names its path (rules._invalid)


@admin.register(StageRuleVersion)
class StageRuleVersionAdmin(admin.ModelAdmin):
    """Saving the add form publishes a new version: existing versions are never edited."""

    form = RulesForm
    list_display = ("version", "created_by", "created_at", "note", "stages_summary", "recompute_progress")
    readonly_fields = ("version", "created_by", "created_at", "note", "after", "before", "recompute_progress")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("definition", "note")
        return self.readonly_fields

    def get_urls(self):
        # Preview (admin/loyalty/stageruleversion/change_form.html): what the posted rules would move
        return rules_preview_urls(self) + super().get_urls()

    def get_changeform_initial_data(self, request):
        ruleset = rules_active()
        latest = StageRuleVersion.objects.order_by("-version").first()
        definition = latest.definition if latest else {
            "window_months": ruleset.window_months,
            "stages": [{"stage": r.stage, "name": r.name, "combine": r.combine, "thresholds": r.thresholds}
                       for r in ruleset.stages]}
        return {"definition": definition}

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else ()  # the add form takes the requester's note

    def changelist_view(self, request, extra_context=None):
        # the rules' history also holds the proposals: pending, rejected, stale (change requests)
        url = reverse("admin:common_changerequest_changelist") + "?kind=stage_rules.publish"
        pending = change_requests_pending_count(target_type="loyalty.stageruleversion")
        waiting = _("Proposals waiting for an approver: %(n)s.") % {"n": pending}
        subtitle = format_html('{} <a href="{}">{}</a>', waiting, url, _("All rules change requests"))
        # approvals are the versions themselves; rejected proposals are listed below them (change_list.html)
        rejected = change_requests_decided(kind="stage_rules.publish")
        return super().changelist_view(request, {**(extra_context or {}), "subtitle": subtitle,
                                                 "rejected_proposals": rejected})

    def save_model(self, request, obj, form, change):
        """Four eyes: saving asks an approver to publish (loyalty/approvals.py); nothing is published here."""
        try:
            request._rules_change = stage_rules_publish_request(
                definition=form.cleaned_data["definition"], note=form.cleaned_data.get("note", ""),
                by=request.user.get_username(), request=request)
        except DomainError as exc:  # e.g. the same rules as the version in force (was a 500)
            request._rules_change = None
            self.message_user(request, exc.message, messages.WARNING)

    def save_related(self, request, form, formsets, change):
        pass  # nothing was saved: the change request holds the proposal

    def log_addition(self, request, obj, message):
        pass  # the change request and the audit log record the proposal

    def response_add(self, request, obj, post_url_continue=None):
        change = getattr(request, "_rules_change", None)
        if change is None:
            return HttpResponseRedirect(reverse("admin:loyalty_stageruleversion_changelist"))
        self.message_user(request, _("Publishing these rules is change request #%(id)s: they take effect (and every "
                                     "customer is re-staged) when another person with the approver role approves "
                                     "it. The request page shows how many customers would move.") % {"id": change.pk},
                          messages.WARNING)
        return HttpResponseRedirect(reverse("admin:common_changerequest_change", args=[change.pk]))

    @admin.display(description=_("stages"))
    def stages_summary(self, obj):
        return ", ".join(f"{s['name']} ({s['stage']})" for s in obj.definition["stages"])

    @admin.display(description=_("after (this version)"))
    def after(self, obj):
        return pretty_json(obj.definition)

    @admin.display(description=_("before (replaced version)"))
    def before(self, obj):
        return pretty_json(obj.previous_definition)

    @admin.display(description=_("recomputation"))
    def recompute_progress(self, obj):
        job = obj.recompute_jobs.order_by("-created_at").first()
        return job.progress_label() if job else "\u2014"


@admin.register(RecomputeJob)
class RecomputeJobAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("id", "rule_version", "status", "progress", "changed_number", "created_at", "started_at",
                    "heartbeat_at", "finished_at")
    list_filter = ("status",)
    list_select_related = ("rule_version",)
    readonly_fields = ("rule_version", "status", "total", "done", "changed", "cursor", "error", "created_at",
                       "started_at", "heartbeat_at", "finished_at")
    actions = ("resume",)

    @admin.display(description=_("progress"))
    def progress(self, obj):
        return obj.progress_label()

    @admin.display(description=_("stages changed"), ordering="changed")
    def changed_number(self, obj):
        return number(obj.changed)

    def has_resume_permission(self, request):
        return request.user.has_perm("loyalty.change_recomputejob")

    @admin.action(description=_("Resume the selected unfinished jobs now (in the background)"),
                  permissions=["resume"])
    def resume(self, request, queryset):
        from .tasks import recompute

        ids = list(queryset.exclude(status__in=["done", "superseded"]).values_list("pk", flat=True))
        queued = sum(enqueue(recompute, pk) for pk in ids)
        for pk in ids:  # a recomputation re-stages customers (and so their rewards)
            audit_record(action="recompute_job.resume", target_type="loyalty.recomputejob", target_id=str(pk),
                         request=request)
        if queued < len(ids):  # the broker is down: loyalty.recompute_resume picks them up when it is back
            self.message_user(request, gettext(
                "Queued %(queued)d of %(total)d job(s); the others are resumed automatically once the task queue "
                "answers again.") % {"queued": queued, "total": len(ids)}, messages.WARNING)
        else:
            self.message_user(request, gettext("Queued %(n)d job(s).") % {"n": len(ids)})


@admin.register(StageChange)
class StageChangeAdmin(PersonalDataAdminMixin, ReadOnlyMixin, admin.ModelAdmin):
    personal_fields = ("reason", "reason_pretty")  # the totals that crossed the thresholds
    list_display = ("at", "customer", "from_stage_name", "to_stage_name", "cause", "rule_version")
    list_filter = ("cause", stage_list_filter("to_stage", _("to stage")))
    search_fields = ("=customer__customer_id",)
    list_select_related = ("customer",)
    show_full_result_count = False
    readonly_fields = ("customer", "from_stage_name", "to_stage_name", "from_rules_stage_name",
                       "to_rules_stage_name", "cause", "rule_version", "at", "reason_pretty")
    fields = readonly_fields

    @admin.display(description=_("from stage"), ordering="from_stage")
    def from_stage_name(self, obj):
        return stage_label_cheap(obj.from_stage)

    @admin.display(description=_("to stage"), ordering="to_stage")
    def to_stage_name(self, obj):
        return stage_label_cheap(obj.to_stage)

    @admin.display(description=_("from rules stage"))
    def from_rules_stage_name(self, obj):
        return stage_label_cheap(obj.from_rules_stage)

    @admin.display(description=_("to rules stage"))
    def to_rules_stage_name(self, obj):
        return stage_label_cheap(obj.to_rules_stage)

    @admin.display(description=_("why"))
    def reason_pretty(self, obj):
        return change_reason_html(obj.reason, ruleset=rules_active())


class PinForm(forms.ModelForm):
    customer_ref = forms.CharField(label=_("customer ID"), max_length=64)
    # the service's field names -> this form's
    FIELDS = {"customer_id": "customer_ref", "floor": "floor", "reason": "reason", "expires_at": "expires_at"}

    class Meta:
        model = StagePin
        fields = ("floor", "reason", "expires_at")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        ruleset = rules_active()  # the floor is one of the stages in force, offered by name
        self.fields["floor"] = forms.TypedChoiceField(
            label=_("floor stage"), coerce=int,
            choices=[(rule.stage, stage_label(rule.stage, ruleset=ruleset)) for rule in ruleset.stages])

    def clean(self):
        data = super().clean()
        if not self.errors:
            try:
                services.stage_pin_validate(customer_id=data["customer_ref"], floor=data["floor"],
                                            reason=data["reason"], expires_at=data["expires_at"], by="admin")
            except DomainError as exc:
                self.add_error(self.FIELDS.get(exc.field), exc.message)  # the message is in the page's language
        return data


@admin.register(StagePin)
class StagePinAdmin(PersonalDataAdminMixin, admin.ModelAdmin):
    """Operators pin a floor (reason + expiry); pins are never edited or deleted, only revoked."""

    personal_fields = ("reason", "revoke_reason")  # free text about one customer

    list_display = ("customer", "floor_name", "reason", "expires_at", "created_by", "created_at", "state",
                    "revoked_by")
    list_filter = (stage_list_filter("floor", _("floor stage")),)
    search_fields = ("=customer__customer_id",)
    list_select_related = ("customer",)
    actions = ("revoke",)

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = PinForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("customer_ref", "floor", "reason", "expires_at")
        return ("customer", "floor_name", "reason", "expires_at", "created_by", "created_at", "revoked_at",
                "revoked_by", "revoke_reason")

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("floor stage"), ordering="floor")
    def floor_name(self, obj):
        return stage_label_cheap(obj.floor)

    @admin.display(description=_("state"))
    def state(self, obj):
        if obj.revoked_at:
            return pgettext("pin state", "revoked")
        return pgettext("pin state", "active") if obj.expires_at > timezone.now() else pgettext("pin state", "expired")

    def save_model(self, request, obj, form, change):
        pin = services.stage_pin_set(customer_id=form.cleaned_data["customer_ref"],
                                     floor=form.cleaned_data["floor"], reason=form.cleaned_data["reason"],
                                     expires_at=form.cleaned_data["expires_at"], by=request.user.get_username(),
                                     request=request)
        obj.pk, obj.customer_id, obj.created_by = pin.pk, pin.customer_id, pin.created_by

    def has_revoke_permission(self, request):
        return request.user.has_perm("loyalty.change_stagepin")

    @admin.action(description=_("Revoke the selected pins"), permissions=["revoke"])
    def revoke(self, request, queryset):
        n = 0
        for pk in queryset.filter(revoked_at__isnull=True).values_list("pk", flat=True):
            services.stage_pin_revoke(pin_id=pk, by=request.user.get_username(), reason="revoked in the admin",
                                      request=request)
            n += 1
        self.message_user(request, gettext("Revoked %(n)d pin(s).") % {"n": n})


def _dashboard_rows():
    from .models import RecomputeJob

    rows = []
    job = RecomputeJob.objects.select_related("rule_version").order_by("-pk").first()
    if job is not None:
        rows.append((gettext("Latest stage recomputation (rules v%(version)s)") % {
                         "version": job.rule_version.version},
                     job.progress_label(),
                     f"/admin/loyalty/recomputejob/{job.pk}/change/"))
    return rows


register_panel(_("Loyalty stages"), _dashboard_rows)
