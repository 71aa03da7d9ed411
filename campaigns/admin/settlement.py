from django.contrib import admin, messages
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from loyalty.selectors import stage_label, stage_labels
from mercari_ops.common import formatting
from mercari_ops.common.audit import audit_record
from mercari_ops.common.privacy_admin import PersonalDataAdminMixin
from mercari_ops.common.roles import can_see_pii

from ..models import (
    Bill,
    BillLine,
    CampaignReward,
    CardStatus,
    CustomerNotification,
    PointsGrant,
    PointsLedgerEntry,
    PointsServiceBreaker,
)
from ..services import bills_settle, grants_deliver
from ..services.grants import points_breaker_close
from ..services.settlement import dead_bills_retry
from .common import OperatorActionsMixin, ReadOnlyAdmin, csv_response

REWARD_CSV = ["campaign_id", "campaign_version", "customer_id", "payment_id", "bill_id", "stage", "rate", "amount",
              "points", "capped", "settled_at", "created_at", "reversed_at", "grant_status"]


def _statuses(model, ids: list[int]) -> dict:
    return {str(pk): status for pk, status in model.objects.filter(pk__in=ids).values_list("pk", "status")}


def _audit_batch(request, action: str, model, ids: list[int], before: dict, outcome: dict) -> None:
    """One audit entry per operator action: the service commits bill by bill (or calls the points service), so
    the entry follows the batch, with each row's status before and after and the service's report."""
    audit_record(action=action, target_type=model._meta.label_lower, target_id=str(ids[0]) if len(ids) == 1 else "",
                 before={"statuses": before},
                 after={"statuses": _statuses(model, ids), "outcome": outcome}, request=request,
                 note=f"{len(ids)} selected")


@admin.register(CampaignReward)
class CampaignRewardAdmin(PersonalDataAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    personal_fields = ("amount", "amount_yen")  # the customer's payment amount; points and rate stay visible
    list_display = ["payment_id", "customer_id", "campaign", "campaign_version", "stage_name", "rate", "amount_yen",
                    "points_pt", "capped", "settled_at", "reversed_at"]
    list_filter = ["campaign", "capped", "stage", ("settled_at", admin.DateFieldListFilter),
                   ("reversed_at", admin.EmptyFieldListFilter)]
    search_fields = ["=customer_id", "=payment_id", "=bill__bill_id"]
    list_select_related = ["campaign"]
    show_full_result_count = False
    actions = ["export_csv"]

    def get_changelist_instance(self, request):
        changelist = super().get_changelist_instance(request)
        labels = stage_labels({reward.stage for reward in changelist.result_list})  # one read of the rules per page
        for reward in changelist.result_list:
            reward.stage_text = labels[reward.stage]
        return changelist

    @admin.display(description=_("stage"), ordering="stage")
    def stage_name(self, obj):
        return getattr(obj, "stage_text", None) or stage_label(obj.stage)

    @admin.display(description=_("amount"), ordering="amount")
    def amount_yen(self, obj):
        return formatting.yen(obj.amount)

    @admin.display(description=_("points"), ordering="points")
    def points_pt(self, obj):
        return formatting.points(obj.points)

    @admin.action(description=_("Export selected rewards as CSV"))
    def export_csv(self, request, queryset):
        raw = can_see_pii(request.user)
        # customers' rewards (and, for some roles, payment amounts) leave the system: say who took them
        audit_record(action="campaign_reward.export_csv", target_type="campaigns.campaignreward",
                     after={"rows": queryset.count(), "amounts": raw}, request=request)
        rows = (
            [r.campaign_id, r.campaign_version, r.customer_id, r.payment_id, r.bill.bill_id, r.stage, r.rate,
             r.amount if raw else "", r.points, r.capped, r.settled_at.isoformat(), r.created_at.isoformat(),
             r.reversed_at.isoformat() if r.reversed_at else "", r.grant.status if r.grant_id else ""]
            for r in queryset.select_related("bill", "grant").order_by("pk").iterator(chunk_size=2000)
        )
        return csv_response("campaign_rewards.csv", REWARD_CSV, rows)


class BillLineInline(PersonalDataAdminMixin, ReadOnlyAdmin, admin.TabularInline):
    model = BillLine
    personal_fields = ("amount", "merchant_id")
    personal_rows = True  # one customer's payments, amounts in each row's title too
    extra = 0
    fields = ["payment_id", "amount", "merchant_id", "payment_method", "channel", "paid_at"]
    readonly_fields = fields


@admin.register(Bill)
class BillAdmin(OperatorActionsMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["bill_id", "customer_id", "billing_month", "status", "line_count", "unmatched_lines",
                    "settled_at", "processed_at", "settle_failures", "dead_reason_short"]
    list_filter = ["status", "billing_month"]
    search_fields = ["=bill_id", "=customer_id"]
    inlines = [BillLineInline]
    show_full_result_count = False
    actions = ["settle_now", "retry_settlement"]

    @admin.display(description=_("Why set aside"))
    def dead_reason_short(self, obj) -> str:
        return obj.dead_reason[:120] if obj.status == Bill.Status.DEAD else ""

    @admin.action(description=_("Settle selected bills now (idempotent)"), permissions=["operate"])
    def settle_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:1000])
        before = _statuses(Bill, ids)
        report, _ = bills_settle(bill_ids=ids)
        _audit_batch(request, "bill.settle_now", Bill, ids, before, report.as_dict())
        self.message_user(request, gettext("Settled: %(report)s") % {"report": report.as_dict()},
                          messages.WARNING if report.bills_dead else messages.SUCCESS)

    @admin.action(description=_("Retry settlement of selected bills set aside (after a fix)"),
                  permissions=["operate"])
    def retry_settlement(self, request, queryset):
        ids = list(queryset.filter(status=Bill.Status.DEAD).values_list("pk", flat=True)[:1000])
        if not ids:
            self.message_user(request, gettext("None of the selected bills is set aside."), messages.WARNING)
            return
        before = _statuses(Bill, ids)
        report = dead_bills_retry(bill_ids=ids)
        _audit_batch(request, "bill.settle_retry", Bill, ids, before, report.as_dict())
        settled = report.bills - report.bills_dead
        if report.bills_dead:
            reasons = "; ".join(f"{bill_id}: {reason[:200]}" for bill_id, reason in report.dead[:5])
            self.message_user(request, gettext("%(settled)d settled, %(dead)d still cannot settle: %(reasons)s")
                              % {"settled": settled, "dead": report.bills_dead, "reasons": reasons}, messages.WARNING)
        else:
            self.message_user(request, gettext("%(settled)d settled (%(lines)d lines rewarded, %(grants)d grants).")
                              % {"settled": settled, "lines": report.lines_rewarded, "grants": report.grants},
                              messages.SUCCESS)


@admin.register(PointsGrant)
class PointsGrantAdmin(OperatorActionsMixin, ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["idempotency_key", "customer_id", "points_pt", "status", "attempts", "next_attempt_at", "sent_at",
                    "notified_via", "last_error"]
    list_filter = ["status", "notified_via"]
    search_fields = ["=customer_id", "=idempotency_key"]
    show_full_result_count = False
    actions = ["deliver_now"]

    @admin.display(description=_("points"), ordering="points")
    def points_pt(self, obj):
        return formatting.points(obj.points)

    @admin.action(description=_("Try delivering selected pending grants now"), permissions=["operate"])
    def deliver_now(self, request, queryset):
        from django.utils import timezone

        ids = list(queryset.filter(status=PointsGrant.Status.PENDING).values_list("pk", flat=True)[:5000])
        before = _statuses(PointsGrant, ids)
        counts = grants_deliver(grant_ids=ids, now=timezone.now() + timezone.timedelta(days=3650))
        _audit_batch(request, "points_grant.deliver_now", PointsGrant, ids, before, counts)
        self.message_user(request, gettext("Delivery: %(counts)s") % {"counts": counts},
                          messages.SUCCESS if not counts["retry"] else messages.WARNING)


@admin.register(PointsServiceBreaker)
class PointsServiceBreakerAdmin(OperatorActionsMixin, ReadOnlyAdmin, admin.ModelAdmin):
    """Grant delivery pauses while the points service is down (see campaigns.services.grants)."""

    list_display = ["name", "state", "open_until", "consecutive_failures", "openings", "opened_at",
                    "last_success_at", "last_error"]
    readonly_fields = list_display
    actions = ["close_now"]

    @admin.display(description=_("State"))
    def state(self, obj) -> str:
        from django.utils import timezone

        if obj.open_until is None:
            return gettext("closed: delivering")
        return gettext("open: paused") if obj.open_until > timezone.now() else gettext("half-open: next run probes")

    @admin.action(description=_("Try the points service on the next run (close the breaker)"),
                  permissions=["operate"])
    def close_now(self, request, queryset):
        before = {b.name: {"open_until": b.open_until, "consecutive_failures": b.consecutive_failures}
                  for b in PointsServiceBreaker.objects.all()}
        points_breaker_close()
        audit_record(action="points_breaker.close", target_type="campaigns.pointsservicebreaker", before=before,
                     after={"open_until": None}, request=request)
        self.message_user(request, gettext("The next delivery run sends at once."), messages.SUCCESS)


@admin.register(PointsLedgerEntry)
class PointsLedgerEntryAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["idempotency_key", "customer_id", "points_pt", "reason", "created_at"]
    search_fields = ["=customer_id", "=idempotency_key"]
    show_full_result_count = False

    @admin.display(description=_("points"), ordering="points")
    def points_pt(self, obj):
        return formatting.points(obj.points)


@admin.register(CustomerNotification)
class CustomerNotificationAdmin(PersonalDataAdminMixin, ReadOnlyAdmin, admin.ModelAdmin):
    personal_fields = ("text",)  # the message as sent, names included
    list_display = ["customer_id", "text", "created_at"]
    search_fields = ["=customer_id"]
    show_full_result_count = False


@admin.register(CardStatus)
class CardStatusAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["customer_id", "mercard_status", "changed_at", "event_id"]
    list_filter = ["mercard_status"]
    search_fields = ["=customer_id"]
    show_full_result_count = False
