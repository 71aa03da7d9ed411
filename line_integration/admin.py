"""Marketers: templates, deliveries per campaign, failures, linkage users (LINE IDs masked). Operators: all."""


from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext, gettext_lazy, ngettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.admin_utils import pretty_json
from mercari_ops.common.audit import audit_record
from mercari_ops.common.audit_admin import AuditedDeleteMixin, NeverDeletedAdminMixin
from mercari_ops.common.dashboard import register_chart
from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.formatting import number
from mercari_ops.common.privacy_admin import PersonalDataAdminMixin

from . import approvals as line_approvals
from . import selectors, services
from .models import (
    AudienceGroup,
    AudienceJob,
    CampaignDelivery,
    LineLinkageUser,
    LineRequest,
    LineUser,
    MessageTemplate,
    OutboundMessage,
    SendingPause,
    WebhookEvent,
)
from .services.pause import sending_pause_set
from .services.templates import messages_validate

line_approvals.register()  # four eyes on mass sends


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = ["name", "description", "messages", "enrich_path", "fallback_messages", "active"]

    def clean(self):
        cleaned = super().clean()
        for field in ("messages", "fallback_messages"):
            value = cleaned.get(field)
            if value is None and field == "fallback_messages":
                continue
            try:
                messages_validate(value, field)
            except ValidationFailed as exc:
                self.add_error(field, gettext("%(message)s (at %(field)s)") % {"message": exc.message,
                                                                               "field": exc.field})
        return cleaned


@admin.register(MessageTemplate)
class MessageTemplateAdmin(AuditedDeleteMixin, admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = ["name", "description", "enrich_path", "active", "updated_at"]
    list_filter = ["active"]
    search_fields = ["name", "description"]

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        services.template_save(name=data["name"], messages=data["messages"], description=data["description"],
                               enrich_path=data["enrich_path"], fallback_messages=data.get("fallback_messages"),
                               active=data["active"], request=request)
        obj.pk = MessageTemplate.objects.get(name=data["name"]).pk


@admin.register(OutboundMessage)
class OutboundMessageAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("line_user_id", "params", "params_pretty")  # params fill templates ("Hi {name}")
    list_display = ["id", "campaign_id", "dispatch_id", "user_id", "line_user_id", "template", "kind", "status",
                    "reason_text", "created_at", "sent_at"]
    list_filter = ["status", "kind"]
    search_fields = ["campaign_id", "dispatch_id", "user_id"]
    fields = ["dispatch_id", "user_id", "campaign_id", "template", "params_pretty", "line_user_id", "kind", "status",
              "reason_text", "request", "created_at", "sent_at"]
    readonly_fields = fields
    raw_id_fields = ["request"]
    show_full_result_count = False

    @admin.display(description=_("parameters"))
    def params_pretty(self, obj):
        return pretty_json(obj.params)

    @admin.display(description=_("reason"), ordering="reason")
    def reason_text(self, obj):
        # a skip reason is a code ("blocked"): its label reads as a sentence; other reasons are LINE's own text
        labels = dict(OutboundMessage.SkipReason.choices)
        return labels.get(obj.reason, obj.reason)

    def has_add_permission(self, request):
        return False


@admin.register(CampaignDelivery)
class CampaignDeliveryAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    """Deliveries per Braze campaign (a read-only report)."""

    personal_fields = ("line_user_id", "params")  # the change page is an outbound message's

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):  # Django's own check, which this view replaces
            raise PermissionDenied
        context = {**self.admin_site.each_context(request), "title": gettext("Deliveries per Braze campaign"),
                   "rows": selectors.campaign_delivery_counts(), "opts": self.model._meta,
                   "failures": OutboundMessage.objects.filter(status=OutboundMessage.Status.FAILED)
                   .order_by("-id").values("campaign_id", "user_id", "reason", "created_at")[:50]}
        return TemplateResponse(request, "admin/line_integration/campaign_deliveries.html", context)

    def has_add_permission(self, request):
        return False


@admin.register(LineRequest)
class LineRequestAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("body", "body_pretty")  # the body carries LINE user IDs
    list_display = ["id", "kind", "status", "recipients", "attempts", "last_status", "last_error",
                    "next_attempt_at", "sent_at"]
    list_filter = ["status", "kind", "last_status"]
    readonly_fields = ["kind", "retry_key", "body_pretty", "recipient_count", "status", "attempts",
                       "next_attempt_at", "claimed_until", "last_status", "last_error", "accepted_request_id",
                       "created_at", "sent_at"]
    exclude = ["body"]
    show_full_result_count = False

    @admin.display(description=_("body"))
    def body_pretty(self, obj):
        return pretty_json(obj.body)

    @admin.display(description=_("recipients"), ordering="recipient_count")
    def recipients(self, obj):
        return number(obj.recipient_count)

    def has_add_permission(self, request):
        return False


@admin.register(LineUser)
class LineUserAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("line_user_id",)
    list_display = ["customer_id", "line_user_id", "status", "rich_menu_id", "linked_at", "blocked_at"]
    list_filter = ["status"]
    search_fields = ["customer_id", "line_user_id"]
    fields = ["line_user_id", "customer_id", "status", "rich_menu_id", "linked_at", "blocked_at"]
    readonly_fields = fields
    actions = ["send_test_message"]

    @admin.action(description=_("Send a test message to the selected linked users"), permissions=["change"])
    def send_test_message(self, request, queryset):
        customer_ids = list(queryset.filter(status=LineUser.Status.LINKED).exclude(customer_id=None)
                            .values_list("customer_id", flat=True))
        sent = line_approvals.test_messages_start(self, request, customer_ids)  # four eyes above the threshold
        if sent is None:
            return
        self.message_user(request, ngettext("%(n)d test message queued; see Outbound messages for the outcome.",
                                            "%(n)d test messages queued; see Outbound messages for the outcome.",
                                            sent) % {"n": sent},
                          messages.SUCCESS if sent else messages.WARNING)

    def has_add_permission(self, request):
        return False


@admin.register(LineLinkageUser)
class LineLinkageUserAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("line_id",)
    list_display = ["id", "line_id", "line_audience_status", "job", "created", "updated"]
    list_filter = ["line_audience_status"]
    search_fields = ["line_id"]
    fields = ["line_id", "line_audience_status", "job", "created", "updated"]
    readonly_fields = fields
    show_full_result_count = False

    def changelist_view(self, request, extra_context=None):
        counts = selectors.linkage_status_counts()
        labels = dict(LineLinkageUser.AudienceStatus.choices)
        extra_context = {**(extra_context or {}), "subtitle": ", ".join(
            f"{labels.get(k, k)}: {number(v)}" for k, v in counts.items())}
        return super().changelist_view(request, extra_context)

    def has_add_permission(self, request):
        return False


class RunAudienceJobMixin:
    """A "Run the audience job now" button on the changelist: works with no rows (a fresh install).

    POST only to `<changelist>/run-now/` (the admin view wrapper adds login and CSRF checks); only users
    who may change the model (operators) see the button or may use it. It queues the same periodic task
    (the service under its lock), so it never overlaps a scheduled run.
    """

    change_list_template = "admin/line_integration/audience_change_list.html"

    def _url_name(self, view: str) -> str:
        return f"{self.model._meta.app_label}_{self.model._meta.model_name}_{view}"

    def get_urls(self):
        run_now = path("run-now/", self.admin_site.admin_view(self.run_audience_job_now),
                       name=self._url_name("run_now"))
        return [run_now, *super().get_urls()]

    def run_audience_job_now(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            raise PermissionDenied
        from .tasks import line_audience_sync

        # the job uploads customers' LINE IDs to LINE audiences: who started it by hand is recorded
        audit_record(action="line.audience_run_now", target_type=self.model._meta.label_lower, request=request)
        try:
            line_audience_sync.delay()
        except Exception as exc:  # the broker is down: say so instead of a 500
            self.message_user(request, gettext("Could not queue the audience job: %(error)s") % {"error": exc},
                              messages.ERROR)
        else:
            self.message_user(request, gettext("Audience job queued (it runs under its lock; see Audience jobs)."),
                              messages.SUCCESS)
        return HttpResponseRedirect(reverse(f"admin:{self._url_name('changelist')}", current_app=self.admin_site.name))

    def changelist_view(self, request, extra_context=None):
        run_now_url = (reverse(f"admin:{self._url_name('run_now')}", current_app=self.admin_site.name)
                       if self.has_change_permission(request) else None)
        return super().changelist_view(request, {**(extra_context or {}), "run_now_url": run_now_url})


@admin.register(AudienceGroup)
class AudienceGroupAdmin(NeverDeletedAdminMixin, RunAudienceJobMixin, admin.ModelAdmin):
    list_display = ["audience_group_id", "description", "active", "created_at", "expires_at"]
    list_filter = ["active"]
    readonly_fields = ["audience_group_id", "description", "active", "created_at", "expires_at"]

    def has_add_permission(self, request):
        return False  # groups are made by the audience job


@admin.register(AudienceJob)
class AudienceJobAdmin(NeverDeletedAdminMixin, RunAudienceJobMixin, admin.ModelAdmin):
    list_display = ["description", "audience_group", "status", "users", "line_job_id", "created_at",
                    "finished_at"]
    list_filter = ["status"]
    readonly_fields = ["audience_group", "description", "status", "line_job_id", "user_count", "created_at",
                       "finished_at"]

    @admin.display(description=_("users"), ordering="user_count")
    def users(self, obj):
        return number(obj.user_count)

    def has_add_permission(self, request):
        return False  # "Run the audience job now" starts one


@admin.register(WebhookEvent)
class WebhookEventAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("line_user_id",)
    list_display = ["webhook_event_id", "event_type", "mode", "line_user_id", "outcome", "received_at"]
    list_filter = ["event_type", "mode"]
    search_fields = ["webhook_event_id"]
    fields = ["webhook_event_id", "event_type", "mode", "line_user_id", "outcome", "received_at"]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # LINE sends them


# The admin's operations page: LINE traffic of the last 24 hours (mercari_ops/common/dashboard.py).
register_chart(gettext_lazy("LINE"), selectors.line_ops_charts)


@admin.register(SendingPause)
class SendingPauseAdmin(admin.ModelAdmin):
    """The emergency stop: one page, one person, audited (no change request: stopping must never wait)."""

    fields = ("paused", "reason", "changed_by", "changed_at")
    readonly_fields = ("changed_by", "changed_at")

    def changelist_view(self, request, extra_context=None):
        SendingPause.objects.get_or_create(pk=1)
        return redirect(reverse("admin:line_integration_sendingpause_change", args=[1]))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        sending_pause_set(paused=obj.paused, reason=obj.reason, by=request.user.get_username(), request=request)
