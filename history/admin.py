"""Operators' screens: a customer's history as the app shows it, entries with their transitions,
waiting events and dead letters of the payment-events topic, and repayment requests."""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.shortcuts import render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.admin_utils import pretty_json
from mercari_ops.common.audit_admin import NeverDeletedAdminMixin
from mercari_ops.common.dashboard import register_panel
from mercari_ops.common.errors import DomainError
from mercari_ops.common.formatting import points, yen
from mercari_ops.common.privacy_admin import PersonalDataAdminMixin
from mercari_ops.common.roles import can_see_pii
from mercari_ops.inbox.admin import DeadLetterAdmin, InboxEventAdmin
from mercari_ops.inbox.models import InboxEvent

from . import selectors
from .canonical import TOPIC
from .models import (
    DeadPaymentEvent,
    EntryState,
    EntryType,
    PaymentDeadLetter,
    PaymentEntry,
    PaymentTransition,
    RepaymentRequest,
    WaitingPaymentEvent,
)

# Why the campaigns estimate gives no points (codes of campaigns.rules, as the history API answers them).
NO_POINTS_REASONS = {
    "no_active_campaign": _("No active campaign"),
    "unknown_customer": _("Unknown customer"),
    "unknown_merchant": _("Unknown merchant"),
    "card_status_not_eligible": _("Card status not eligible"),
    "stage_not_eligible": _("Stage not eligible"),
    "channel_not_eligible": _("Channel not eligible"),
    "merchant_not_eligible": _("Merchant not eligible"),
    "payment_method_not_eligible": _("Payment method not eligible"),
    "category_excluded": _("Category excluded"),
    "amount_not_positive": _("Amount zero or negative"),
    "outside_campaign_period": _("Outside the campaign period"),
    "amount_earns_zero_points": _("Amount too small for 1 point"),
}


def _no_points(cashback: dict | None) -> str:
    if not cashback or cashback.get("eligible"):
        return ""
    reason = cashback.get("reason") or ""
    return str(NO_POINTS_REASONS.get(reason, reason))


def _local(text: str | None) -> str:
    """An ISO time of the history API (UTC) in the business time zone, as the admin shows its own fields."""
    at = parse_datetime(text) if text else None
    return date_format(timezone.localtime(at), "SHORT_DATETIME_FORMAT") if at else (text or "")


def _entries_for_page(entries: list[dict]) -> list[dict]:
    """The API's entries with what a person reads: names of types and states, yen, points, local times."""
    types, states = dict(EntryType.choices), dict(EntryState.choices)
    return [{**entry, "when": _local(entry["occurred_at"]), "type_label": types.get(entry["type"], entry["type"]),
             "state_label": states.get(entry["state"], entry["state"]), "amount_yen": yen(entry["amount"]),
             "actions": [{**action, "amount_yen": yen(action.get("amount"))} for action in entry["actions"]],
             "cashback_points": points(entry["cashback"]["points"])
             if entry.get("cashback") and entry["cashback"].get("eligible") else None,
             "no_points": _no_points(entry.get("cashback")),
             "children": _entries_for_page(entry["children"])} for entry in entries]


class PaymentTransitionInline(admin.TabularInline):
    model = PaymentTransition
    fields = ("kind", "from_state", "to_state", "outcome", "occurred_at", "recorded_at", "event_id", "note")
    readonly_fields = fields
    extra = 0
    can_delete = False
    ordering = ("recorded_at", "id")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(PaymentEntry)
class PaymentEntryAdmin(PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("amount", "amount_yen", "title", "attributes", "attributes_pretty")  # payment details
    list_display = ("payment_id", "customer_link", "type", "state", "amount_yen", "occurred_at", "parent_payment")
    list_filter = ("type", "state")
    search_fields = ("=payment_id", "=customer_id")
    readonly_fields = ("payment_id", "customer_link", "type", "parent", "root", "amount_yen", "state", "state_at",
                       "occurred_at", "title", "attributes_pretty", "event_id", "created_at", "updated_at")
    exclude = ("attributes", "customer_id", "amount")
    inlines = [PaymentTransitionInline]
    list_per_page = 50
    show_full_result_count = False  # millions of rows: no COUNT(*)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("parent")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("customer"))
    def customer_link(self, obj):
        url = reverse("admin:history_customer", args=[obj.customer_id])
        return format_html('<a href="{}">{}</a>', url, obj.customer_id)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_yen(self, obj):
        return yen(obj.amount)

    @admin.display(description=_("parent"))
    def parent_payment(self, obj):
        return obj.parent.payment_id if obj.parent else "\u2014"

    @admin.display(description=_("attributes"))
    def attributes_pretty(self, obj):
        return pretty_json(obj.attributes)

    def get_urls(self):
        view = self.admin_site.admin_view(self.customer_history_view)
        return [path("customer/<str:customer_id>/", view, name="history_customer")] + super().get_urls()

    def customer_history_view(self, request, customer_id: str):
        """The customer's history exactly as the API (and so the app) returns it, page by page."""
        # Who may open the entries list, and only with the personal-data permission: the page is all details.
        if not (self.has_view_permission(request) and can_see_pii(request.user)):
            raise PermissionDenied
        error, page = None, {"entries": [], "next_cursor": None}
        try:
            page = selectors.history_page(customer_id=customer_id, cursor=request.GET.get("cursor") or None)
        except DomainError as exc:  # the API's English message, said again in the page's language
            error = {"customer_id": gettext("No payment history or loyalty record for %(customer)s.") % {
                "customer": customer_id}, "cursor": gettext("This page link is not valid any more: start again "
                                                            "from the newest entries.")}.get(exc.field, exc.message)
        context = {**self.admin_site.each_context(request),
                   "title": gettext("Payment history of %(customer)s") % {"customer": customer_id},
                   "customer_id": customer_id, "entries": _entries_for_page(page["entries"]), "page": page,
                   "error": error, "opts": self.model._meta}
        return render(request, "admin/history/customer_history.html", context)


class _TopicEventAdmin(InboxEventAdmin):
    status = ""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(topic=TOPIC, status=self.status)


@admin.register(WaitingPaymentEvent)
class WaitingPaymentEventAdmin(_TopicEventAdmin):
    """Events parked until their parent (or the state they need) arrives; replay re-checks them now."""

    status = InboxEvent.Status.WAITING
    list_display = ("event_id", "waiting_on", "received_at", "alerted_at", "attempts", "short_error")
    list_filter = (("received_at", admin.DateFieldListFilter),)


@admin.register(DeadPaymentEvent)
class DeadPaymentEventAdmin(_TopicEventAdmin):
    """Invalid transitions, wrong parents, children whose parent never came: fix upstream, then replay."""

    status = InboxEvent.Status.DEAD
    list_display = ("event_id", "error_field", "short_error", "waiting_on", "attempts", "received_at")
    list_filter = ("error_field", ("received_at", admin.DateFieldListFilter))


@admin.register(PaymentDeadLetter)
class PaymentDeadLetterAdmin(DeadLetterAdmin):
    """Bodies that never validated (unknown type, missing field): edit the raw body, then replay."""

    def get_queryset(self, request):
        return super().get_queryset(request).filter(topic=TOPIC)


@admin.register(RepaymentRequest)
class RepaymentRequestAdmin(NeverDeletedAdminMixin, PersonalDataAdminMixin, admin.ModelAdmin):
    personal_fields = ("amount", "amount_yen", "response", "response_pretty")
    list_display = ("public_id", "payment", "amount_yen", "status", "attempts", "created_at", "sent_at",
                    "last_error")
    list_filter = ("status",)
    search_fields = ("=idempotency_key", "=entry__payment_id", "=entry__customer_id")
    readonly_fields = ("public_id", "idempotency_key", "entry", "amount_yen", "status", "response_pretty",
                       "attempts", "next_attempt_at", "last_error", "requested_by", "created_at", "sent_at")
    exclude = ("response", "amount")

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("entry")

    @admin.display(description=_("payment"))
    def payment(self, obj):
        return obj.entry.payment_id

    @admin.display(description=_("amount"), ordering="amount")
    def amount_yen(self, obj):
        return yen(obj.amount)

    @admin.display(description=_("answer given"))
    def response_pretty(self, obj):
        return pretty_json(obj.response)

    def has_add_permission(self, request):
        return False


def _dashboard_rows():
    return [
        (gettext("Payment events waiting for their parent"),
         WaitingPaymentEvent.objects.filter(topic=TOPIC, status=InboxEvent.Status.WAITING).count(),
         "/admin/history/waitingpaymentevent/"),
        (gettext("Payment events dead"),
         DeadPaymentEvent.objects.filter(topic=TOPIC, status=InboxEvent.Status.DEAD).count(),
         "/admin/history/deadpaymentevent/"),
        (gettext("Repayment requests not yet delivered"),
         RepaymentRequest.objects.filter(status=RepaymentRequest.Status.PENDING).count(),
         "/admin/history/repaymentrequest/?status__exact=pending"),
    ]


register_panel(_("Payment history"), _dashboard_rows)
