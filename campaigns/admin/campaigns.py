import functools

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty import selectors as loyalty_selectors
from mercari_ops.common import formatting
from mercari_ops.common.admin_utils import pretty_json
from mercari_ops.common.audit import audit_record
from mercari_ops.common.audit_admin import AuditedDeleteMixin
from mercari_ops.common.business_time import MONTH_FORMAT, business_month, month_shift
from mercari_ops.common.errors import DomainError, ValidationFailed

from .. import rules
from ..models import Campaign, CampaignBacktest, CampaignStageRate, CampaignVersion
from ..services import (
    campaign_backtest_queue,
    campaign_end,
    campaign_snapshot,
    campaign_validate,
    campaign_version_record,
)
from . import four_eyes
from .charts import backtest_display, campaign_points_chart
from .common import ReadOnlyAdmin
from .form_tools import CampaignFormToolsMixin, FilterPickerWidget

FILTER_SCHEMA = (
    'user_filters:    {"mercard_status": [2, 3], "stage": {"min": 10, "max": 40}}\n'
    'payment_filters: {"mercari_inner_payment": true, "mercari_outer_payment": false,\n'
    '                  "merchant": {"shop_id": ["<master id>", ...], "invert": true},\n'
    '                  "payment_methods": ["mercard", "id", "apple_pay"],\n'
    '                  "excluded_categories": ["e_money_charge"]}\n'
)


def _filter_help() -> SafeString:
    return format_html("<pre style='font-size:11px'>{}{}</pre>", FILTER_SCHEMA, gettext(
        "Every key is optional; unknown keys are rejected. If neither inner nor outer is given both qualify;\n"
        "if one is given, the other is false. shop_id names merchant master IDs (Merchant masters)."))


FILTER_HELP = lazy(_filter_help, SafeString)()  # in the language of the request that renders the form


def _field_of(dotted: str | None, default: str | None = None) -> str | None:
    if not dotted:
        return default
    return dotted.split(".", 1)[0]


class CampaignForm(forms.ModelForm):
    class Meta:
        model = Campaign
        fields = ["name", "status", "starts_at", "ends_at", "upper_limit", "user_filters", "payment_filters"]
        help_texts = {"user_filters": FILTER_HELP, "payment_filters": _("Schema: see user filters above.")}
        widgets = {"user_filters": FilterPickerWidget("user"), "payment_filters": FilterPickerWidget("payment")}

    class Media:
        # our own static files (no CDN): the filter pickers and the live estimate (form_tools.py)
        js = ["campaigns/admin/filter_picker.js", "campaigns/admin/campaign_form.js"]
        css = {"all": ["campaigns/admin/campaign_form.css"]}

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            campaign_validate(name=data.get("name"), starts_at=data.get("starts_at"), ends_at=data.get("ends_at"),
                              user_filters=data.get("user_filters"), payment_filters=data.get("payment_filters"),
                              upper_limit=data.get("upper_limit"), rates=None)
        except ValidationFailed as exc:
            field = _field_of(exc.field)
            self.add_error(field if field in self.fields else None, exc.message)
        return data


class StageRateFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        if any(form.errors for form in self.forms):
            return
        ranges = [
            (form.cleaned_data["stage_from"], form.cleaned_data["stage_to"], form.cleaned_data["rate"])
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        try:
            rules.stage_rates_validate(ranges)
        except ValidationFailed as exc:
            raise ValidationError(exc.message) from None


class StageRateInline(admin.TabularInline):
    model = CampaignStageRate
    formset = StageRateFormSet
    extra = 1
    fields = ["stage_from", "stage_to", "rate"]


class VersionInline(ReadOnlyAdmin, admin.TabularInline):
    model = CampaignVersion
    extra = 0
    # rejected change requests are listed too (decision "rejected"): approvals and rejections in one history
    fields = ["version", "decision", "changed_at", "changed_by", "note", "before_json", "after_json"]
    readonly_fields = fields
    ordering = ["-version", "-changed_at"]

    @admin.display(description=_("before"))
    def before_json(self, obj):
        return pretty_json(obj.before)

    @admin.display(description=_("after"))
    def after_json(self, obj):
        return pretty_json(obj.after)


@admin.register(Campaign)
class CampaignAdmin(AuditedDeleteMixin, CampaignFormToolsMixin, admin.ModelAdmin):
    form = CampaignForm
    inlines = [StageRateInline, VersionInline]
    list_display = ["name", "status", "starts_at", "ends_at", "upper_limit_points", "version", "rates_text",
                    "backtest_link"]
    list_filter = ["status"]
    search_fields = ["name"]
    readonly_fields = ["version", "created_at", "updated_at", "sample_estimate_panel", "points_per_day"]
    fieldsets = [
        (None, {"fields": ["name", "status", ("starts_at", "ends_at"), "upper_limit"]}),
        (_("Filters"), {"fields": ["user_filters", "payment_filters"]}),
        (_("Estimate for a sample purchase"), {"fields": ["sample_estimate_panel"]}),
        (_("Points granted"), {"fields": ["points_per_day"]}),
        (_("History"), {"fields": ["version", "created_at", "updated_at"], "classes": ["collapse"]}),
    ]
    actions = ["activate", "end", "backtest"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("rates")

    @admin.display(description=_("upper limit"), ordering="upper_limit")
    def upper_limit_points(self, obj):
        return formatting.points(obj.upper_limit)

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        stages = [(rule.stage, rule.name) for rule in loyalty_selectors.rules_active().stages]  # once per page
        for campaign in changelist.result_list:
            campaign.stage_names = stages
        return changelist

    @admin.display(description=_("rates"))
    def rates_text(self, obj):
        """Each range as "10-29 Regular–Silver: 1.0%": its stage numbers and the names of the stages it covers."""
        stages = getattr(obj, "stage_names", None)
        if stages is None:
            stages = [(rule.stage, rule.name) for rule in loyalty_selectors.rules_active().stages]
        parts = []
        for rate in obj.rates.all():
            names = [name for stage, name in stages if rate.stage_from <= stage <= rate.stage_to]
            covered = f" {names[0]}" if len(names) == 1 else f" {names[0]}\u2013{names[-1]}" if names else ""
            parts.append(f"{rate.stage_from}-{rate.stage_to}{covered}: {rate.rate}%")
        return ", ".join(parts)

    @admin.display(description=_("points granted per day"))
    def points_per_day(self, obj):
        return campaign_points_chart(obj)

    @admin.display(description=_("backtest"))
    def backtest_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_campaign_backtest", args=[obj.pk]),
                           gettext("simulate"))

    def get_readonly_fields(self, request, obj=None):
        # status moves only through the actions: activate (an approver decides) and end (emergency stop)
        return [*super().get_readonly_fields(request, obj), "status", "change_requests_table"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        return [*fieldsets, four_eyes.CHANGE_REQUESTS_FIELDSET] if obj is not None else fieldsets

    @admin.display(description=_("change requests"))
    def change_requests_table(self, obj):
        return four_eyes.change_requests_table(obj)

    def save_model(self, request, obj, form, change):
        if four_eyes.save_model_gate(request, obj, change):
            return  # not a draft: save_related records a change request instead of the change
        request._campaign_before = (
            campaign_snapshot(Campaign.objects.get(pk=obj.pk)) if change else None
        )
        obj.updated_at = timezone.now()
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        if four_eyes.save_related_gate(request, form, formsets):
            return
        super().save_related(request, form, formsets, change)
        before = getattr(request, "_campaign_before", None)
        campaign_version_record(campaign=form.instance, before=before, by=request.user.get_username())
        after = campaign_snapshot(form.instance)
        if after != before:  # a draft saved in the admin (changes of active ones go through change requests)
            audit_record(action="campaign.update" if change else "campaign.create", target=form.instance,
                         before=before, after=after, request=request)

    def log_change(self, request, obj, message):
        if getattr(request, "_campaign_gate", None) is None:  # a change request is not a change
            return super().log_change(request, obj, message)
        return None

    def response_change(self, request, obj):
        return four_eyes.gated_response(self, request) or super().response_change(request, obj)

    def has_delete_permission(self, request, obj=None):
        # a campaign that ran has rewards, bills and versions behind it: only a draft is deleted by hand
        if obj is not None and obj.status != Campaign.Status.DRAFT:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        from ..catalog import catalog_changed

        with transaction.atomic():
            super().delete_model(request, obj)  # AuditedDeleteMixin: the audit entry
            catalog_changed()

    def delete_queryset(self, request, queryset):
        from ..catalog import catalog_changed

        with transaction.atomic():
            super().delete_queryset(request, queryset.filter(status=Campaign.Status.DRAFT))
            catalog_changed()

    def _each(self, request, queryset, service, done_message):
        done = 0
        for campaign in queryset:
            try:
                service(campaign_id=campaign.pk, by=request.user.get_username())
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{campaign.name}: {exc.message}", messages.ERROR)
        if done:
            self.message_user(request, done_message(done), messages.SUCCESS)

    @admin.action(description=_("Request activation of the selected drafts (an approver decides)"),
                  permissions=["change"])
    def activate(self, request, queryset):
        four_eyes.activation_request(self, request, queryset)

    @admin.action(description=_("End selected campaigns now (emergency stop; their bills still settle)"),
                  permissions=["change"])
    def end(self, request, queryset):
        self._each(request, queryset, functools.partial(campaign_end, request=request),
                   lambda n: gettext("%(n)d campaign(s) ended.") % {"n": n})

    @admin.action(description=_("Backtest (simulate over a past month)"))
    def backtest(self, request, queryset):
        return redirect(reverse("admin:campaigns_campaign_backtest", args=[queryset.first().pk]))

    def get_urls(self):
        return [
            path("<int:campaign_id>/backtest/", self.admin_site.admin_view(self.backtest_view),
                 name="campaigns_campaign_backtest"),
            path("<int:campaign_id>/backtest/<int:backtest_id>/", self.admin_site.admin_view(self.backtest_result_view),
                 name="campaigns_campaign_backtest_result"),
        ] + self.form_tool_urls() + super().get_urls()

    def _viewable_campaign(self, request, campaign_id: int) -> Campaign:
        campaign = get_object_or_404(Campaign, pk=campaign_id)
        if not self.has_view_permission(request, campaign):
            raise PermissionDenied
        return campaign

    def backtest_view(self, request, campaign_id: int):
        """Choose a month and queue the simulation; a worker runs it (a month can hold a million lines)."""
        campaign = self._viewable_campaign(request, campaign_id)
        default_month = month_shift(business_month(timezone.now()), -1).strftime(MONTH_FORMAT)
        month = request.POST.get("month") or request.GET.get("month") or default_month
        if request.method == "POST":
            try:
                run = campaign_backtest_queue(campaign_id=campaign.pk, month=month, by=request.user.get_username())
            except ValidationFailed as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                self.message_user(request, gettext("Backtest over %(month)s queued; this page follows its "
                                                   "progress.") % {"month": month}, messages.SUCCESS)
                return redirect("admin:campaigns_campaign_backtest_result", campaign.pk, run.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Backtest: %(name)s") % {"name": campaign.name},
            "opts": self.model._meta,
            "campaign": campaign,
            "month": month,
            "previous": CampaignBacktest.objects.filter(campaign=campaign)[:10],
        }
        return TemplateResponse(request, "admin/campaigns/backtest.html", context)

    def backtest_result_view(self, request, campaign_id: int, backtest_id: int):
        """Progress while the worker runs (the page reloads itself), then the result."""
        campaign = self._viewable_campaign(request, campaign_id)
        run = get_object_or_404(CampaignBacktest, pk=backtest_id, campaign=campaign)
        context = {
            **self.admin_site.each_context(request),
            "title": gettext("Backtest: %(name)s over %(month)s") % {"name": campaign.name, "month": run.month},
            "opts": self.model._meta,
            "campaign": campaign,
            "run": run,
            "finished": run.status in (CampaignBacktest.Status.DONE, CampaignBacktest.Status.FAILED),
            "display": backtest_display(run) if run.status == CampaignBacktest.Status.DONE else None,
        }
        return TemplateResponse(request, "admin/campaigns/backtest_result.html", context)


@admin.register(CampaignVersion)
class CampaignVersionAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["campaign", "version", "decision", "changed_at", "changed_by", "note"]
    list_filter = ["decision", "campaign"]
    readonly_fields = ["campaign", "version", "decision", "changed_at", "changed_by", "note", "before_json",
                       "after_json"]
    fields = readonly_fields

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("campaign")

    @admin.display(description=_("before"))
    def before_json(self, obj):
        return pretty_json(obj.before)

    @admin.display(description=_("after"))
    def after_json(self, obj):
        return pretty_json(obj.after)


@admin.register(CampaignBacktest)
class CampaignBacktestAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["campaign", "month", "status", "progress", "created_at", "run_by", "recipients", "points",
                    "open_link"]
    list_filter = ["status", "campaign", "month"]
    list_select_related = ["campaign"]
    readonly_fields = ["campaign", "month", "status", "progress", "error", "created_at", "started_at", "finished_at",
                       "run_by", "result_json", "excluded_json"]
    fields = readonly_fields

    @admin.display(description=_("progress (lines)"))
    def progress(self, obj):
        total = "?" if obj.lines_total is None else f"{obj.lines_total:,}"
        percent = obj.progress_percent
        return f"{obj.lines_done:,} / {total}" + ("" if percent is None else f" ({percent}%)")

    @admin.display(description=_("recipients"))
    def recipients(self, obj):
        return formatting.number(obj.result.get("recipients"))

    @admin.display(description=_("points"))
    def points(self, obj):
        return formatting.points(obj.result.get("points"))

    @admin.display(description="")
    def open_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_campaign_backtest_result",
                                                          args=[obj.campaign_id, obj.pk]), gettext("open"))

    @admin.display(description=_("result"))
    def result_json(self, obj):
        return pretty_json(obj.result)

    @admin.display(description=_("excluded lines by reason"))
    def excluded_json(self, obj):
        return pretty_json(obj.excluded)
