from django.contrib import admin, messages
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.admin_utils import pretty_json
from mercari_ops.common.audit_admin import NeverDeletedAdminMixin
from mercari_ops.common.privacy_admin import PersonalDataAdminMixin

from . import approvals, services
from .admin_pages import AgeColumnMixin, AgeListFilter, DeadLetterPageMixin
from .models import DeadLetter, InboxEvent

approvals.register()  # four eyes on mass replays and discards


@admin.register(InboxEvent)
class InboxEventAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, AgeColumnMixin, admin.ModelAdmin):
    personal_fields = ("payload", "payload_pretty")  # events carry LINE IDs, names, payment details
    list_display = ("event_id", "topic", "status", "short_error", "age", "attempts", "waiting_on", "processed_at")
    list_filter = ("status", "topic", AgeListFilter)
    search_fields = ("=event_id", "=waiting_on", "=message_id")
    readonly_fields = ("topic", "event_id", "status", "payload_pretty", "waiting_on", "attempts",
                       "next_attempt_at", "last_error", "error_field", "message_id", "received_at",
                       "processed_at", "alerted_at")
    exclude = ("payload",)
    actions = ("replay", "discard")
    list_per_page = 100
    show_full_result_count = False  # no COUNT(*) over millions of rows

    @admin.display(description=_("payload"))
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return obj.last_error[:80]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Replay selected events through their handler now"), permissions=["change"])
    def replay(self, request, queryset):
        pks = list(queryset.values_list("pk", flat=True))
        if approvals.mass_gate(self, request, pks, "inbox.event_replay"):
            return  # more than CHANGE_REQUEST_MASS_THRESHOLD: an approver decides
        outcomes = approvals.mass_run(action=approvals.ACTIONS["inbox.event_replay"], pks=pks,
                                      by=request.user.get_username(), request=request)
        self.message_user(request, gettext("Replayed: %(outcomes)s") % {
            "outcomes": ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()))})

    @admin.action(description=_("Discard selected events (never process them)"), permissions=["change"])
    def discard(self, request, queryset):
        pks = list(queryset.values_list("pk", flat=True))
        if approvals.mass_gate(self, request, pks, "inbox.event_discard"):
            return
        approvals.mass_run(action=approvals.ACTIONS["inbox.event_discard"], pks=pks, by=request.user.get_username(),
                           request=request)
        self.message_user(request, gettext("Discarded the selected unprocessed events."), messages.WARNING)


@admin.register(DeadLetter)
class DeadLetterAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, DeadLetterPageMixin, AgeColumnMixin,
                      admin.ModelAdmin):
    personal_fields = ("raw_body", "raw_body_pretty", "event_pretty", "event_json", "attributes_json")
    # Fields, form, and the Replay / Discard buttons of the change page: admin_pages.DeadLetterPageMixin.
    list_display = ("id", "topic", "event_id", "status", "field", "short_error", "age", "times_received",
                    "last_received_at")
    list_filter = ("status", "topic", AgeListFilter)
    search_fields = ("=event_id", "error", "field")
    actions = ("replay", "discard")

    @admin.display(description=_("error"))
    def short_error(self, obj):
        return obj.error[:80]

    def has_add_permission(self, request):
        return False

    @admin.action(description=_("Replay selected dead letters (after fixing the body)"), permissions=["change"])
    def replay(self, request, queryset):
        ok, failed = 0, []
        pks = list(queryset.filter(status=DeadLetter.Status.OPEN).values_list("pk", flat=True))
        if approvals.mass_gate(self, request, pks, "inbox.letter_replay"):
            return
        for pk in pks:
            result = services.dead_letter_replay(letter_pk=pk, by=request.user.get_username(), request=request)
            if result.outcome.value == "dead":
                failed.append(f"#{pk}: {result.error}")
            else:
                ok += 1
        self.message_user(request, ngettext("Replayed %(n)d dead letter.", "Replayed %(n)d dead letters.", ok)
                          % {"n": ok})
        if failed:
            self.message_user(request, gettext("Still failing: %(error)s") % {"error": "; ".join(failed[:10])},
                              messages.ERROR)

    @admin.action(description=_("Discard selected dead letters"), permissions=["change"])
    def discard(self, request, queryset):
        pks = list(queryset.values_list("pk", flat=True))
        if approvals.mass_gate(self, request, pks, "inbox.letter_discard"):
            return
        for pk in pks:
            services.dead_letter_discard(letter_pk=pk, by=request.user.get_username(), request=request)
        self.message_user(request, gettext("Discarded."), messages.WARNING)
