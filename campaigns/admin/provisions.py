from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.urls import path
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common import formatting
from mercari_ops.common.business_time import business_month_label

from ..models import ProvisionDaily, ProvisionJournal
from ..services import provision_journal_compute, provisions_daily_compute
from ..services.provisions import JOURNAL_CSV_HEADER, month_previous
from .common import OperatorActionsMixin, ReadOnlyAdmin, csv_response


@admin.register(ProvisionDaily)
class ProvisionDailyAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["day", "campaign", "unsettled_lines_num", "expected_points_pt", "pending_grant_points_pt",
                    "computed_at"]
    list_filter = ["campaign", ("day", admin.DateFieldListFilter)]
    list_select_related = ["campaign"]

    @admin.display(description=_("unsettled lines"), ordering="unsettled_lines")
    def unsettled_lines_num(self, obj):
        return formatting.number(obj.unsettled_lines)

    @admin.display(description=_("expected points"), ordering="expected_points")
    def expected_points_pt(self, obj):
        return formatting.points(obj.expected_points)

    @admin.display(description=_("pending grant points"), ordering="pending_grant_points")
    def pending_grant_points_pt(self, obj):
        return formatting.points(obj.pending_grant_points)


@admin.register(ProvisionJournal)
class ProvisionJournalAdmin(OperatorActionsMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["month", "campaign", "opening_pt", "accrued_pt", "granted_pt", "reversed_pt", "closing_pt",
                    "computed_at"]
    list_filter = ["month", "campaign"]
    list_select_related = ["campaign"]
    actions = ["export_csv"]
    change_list_template = "admin/campaigns/provisionjournal_change_list.html"

    @admin.display(description=_("opening"), ordering="opening")
    def opening_pt(self, obj):
        return formatting.points(obj.opening)

    @admin.display(description=_("accrued"), ordering="accrued")
    def accrued_pt(self, obj):
        return formatting.points(obj.accrued)

    @admin.display(description=_("granted"), ordering="granted")
    def granted_pt(self, obj):
        return formatting.points(obj.granted)

    @admin.display(description=_("reversed"), ordering="reversed")
    def reversed_pt(self, obj):
        return formatting.points(obj.reversed)

    @admin.display(description=_("closing"), ordering="closing")
    def closing_pt(self, obj):
        return formatting.points(obj.closing)

    @admin.action(description=_("Export selected journal rows as CSV (for accounting)"))
    def export_csv(self, request, queryset):
        rows = ([r.month, r.campaign_id, r.campaign.name, r.opening, r.accrued, r.granted, r.reversed, r.closing,
                 r.computed_at.isoformat()] for r in queryset.select_related("campaign").order_by("month", "campaign"))
        return csv_response("provision_journal.csv", JOURNAL_CSV_HEADER, rows)

    def get_urls(self):
        return [path("recompute/", self.admin_site.admin_view(self.recompute_view),
                     name="campaigns_provisionjournal_recompute")] + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_recompute": self.has_operate_permission(request)}
        return super().changelist_view(request, extra_context)

    def recompute_view(self, request):
        if request.method != "POST":
            return redirect("admin:campaigns_provisionjournal_changelist")
        if not self.has_operate_permission(request):
            raise PermissionDenied
        month = business_month_label(timezone.now())
        provisions_daily_compute()
        rows = provision_journal_compute(month=month_previous(month)) + provision_journal_compute(month=month)
        self.message_user(request, gettext("Recomputed %(n)d journal rows and today's provisions.") % {"n": len(rows)},
                          messages.SUCCESS)
        return redirect("admin:campaigns_provisionjournal_changelist")
