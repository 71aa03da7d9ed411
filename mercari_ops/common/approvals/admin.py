"""The change requests' screens: a filtered list; a page with the diff, the preview figures and the decision.

Rows are written only by the services: nobody adds, edits or deletes them here. Approve and Reject are
POST-only views shown to approvers who did not make the request; the requester may Withdraw.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from ..admin_utils import pretty_json
from ..dashboard import register_panel
from ..errors import DomainError
from ..models import ChangeRequest
from .display import diff_html, diff_rows, value_text  # noqa: F401 (diff_rows: read here by older callers)
from .registry import ChangeKind, change_kind_get
from .services import can_approve, change_request_approve, change_request_reject, change_request_withdraw


def _cell(value) -> str:
    return value_text(value)  # numbers with separators, times in the business zone, JSON pretty-printed


def _table(headers, rows) -> str:
    head = format_html_join("", "<th>{}</th>", ((h,) for h in headers))
    body = format_html_join("", "<tr>{}</tr>", ((format_html_join("", "<td>{}</td>", ((_cell(c),) for c in row)),)
                                                for row in rows))
    return format_html('<table class="change-table"><thead><tr>{}</tr></thead><tbody>{}</tbody></table>', head, body)


def figures_html(value) -> str:
    """Preview figures as tables: scalars as one key/value table, lists of objects and mappings as their own."""
    if not value:
        return "\u2014"
    scalars = [(key, item) for key, item in value.items() if not isinstance(item, (dict, list))]
    parts = [_table([_("figure"), _("value")], scalars)] if scalars else []
    for key, item in value.items():
        if isinstance(item, list) and item and all(isinstance(row, dict) for row in item):
            headers = list(dict.fromkeys(k for row in item for k in row))
            parts.append(format_html("<h4>{}</h4>{}", key, _table(headers, [[row.get(h) for h in headers]
                                                                           for row in item])))
        elif isinstance(item, dict) and item:
            parts.append(format_html("<h4>{}</h4>{}", key, _table(["", _("value")], [
                (k, pretty_json(v) if isinstance(v, (dict, list)) else v) for k, v in item.items()])))
        elif isinstance(item, list):
            parts.append(format_html("<h4>{}</h4><p>{}</p>", key, ", ".join(map(str, item)) or "\u2014"))
    return format_html_join("", "{}", ((part,) for part in parts))


def _kind(obj: ChangeRequest) -> ChangeKind | None:
    try:
        return change_kind_get(obj.kind)
    except LookupError:  # a kind no longer registered: generic display
        return None


@admin.register(ChangeRequest)
class ChangeRequestAdmin(admin.ModelAdmin):
    change_form_template = "admin/common/changerequest/change_form.html"
    list_display = ("id", "kind_label", "target_repr", "summary", "status", "requested_by", "requested_at",
                    "decided_by", "decided_at")
    list_filter = ("status", "kind", "target_type", ("requested_at", admin.DateFieldListFilter))
    search_fields = ("=id", "=target_id", "target_repr", "requested_by", "decided_by")
    list_per_page = 50
    fieldsets = [
        (None, {"fields": ("kind", "summary", "target_type", "target_id", "target_repr", "status")}),
        (_("Request"), {"fields": ("requested_by", "requested_at", "request_note")}),
        (_("Change"), {"fields": ("diff_table",)}),
        (_("Preview figures"), {"fields": ("preview_figures",)}),
        (_("Decision"), {"fields": ("decided_by", "decided_at", "decision_note", "applied_at", "error")}),
    ]
    readonly_fields = ("kind", "summary", "target_type", "target_id", "target_repr", "status", "requested_by",
                       "requested_at", "request_note", "diff_table", "preview_figures", "decided_by", "decided_at",
                       "decision_note", "applied_at", "error")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("kind"), ordering="kind")
    def kind_label(self, obj):
        # the label the app registered ("Activate a campaign"), in the reader's language; the code if unknown
        entry = _kind(obj)
        return entry.label if entry is not None else obj.kind

    @admin.display(description=_("before / after"))
    def diff_table(self, obj):
        # only what changes; the rest folded away, every value formatted by the kind or generically
        return diff_html(obj.before, obj.after, _kind(obj))

    @admin.display(description=_("figures"))
    def preview_figures(self, obj):
        figures = obj.preview
        entry = _kind(obj)
        if obj.status == ChangeRequest.Status.PENDING and entry is not None and entry.live_preview \
                and entry.preview is not None:
            try:
                figures = entry.preview(target_id=obj.target_id, payload=obj.payload) or figures
            except DomainError as exc:
                figures = {"error": exc.message}
        if figures and entry is not None and entry.render_preview is not None:
            return entry.render_preview(figures)  # the app's tables and charts, with its names
        return figures_html(figures)

    # --- decisions ------------------------------------------------------------------------------------------

    def get_urls(self):
        def route(name, view):
            return path(f"<int:pk>/{name}/", self.admin_site.admin_view(view), name=f"common_changerequest_{name}")

        return [route("approve", self.approve_view), route("reject", self.reject_view),
                route("withdraw", self.withdraw_view)] + super().get_urls()

    def _decide(self, request, pk: int, service, done: str):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        change = get_object_or_404(ChangeRequest, pk=pk)
        if not self.has_view_permission(request, change):
            raise PermissionDenied
        note = request.POST.get("note", "")[:2000]
        try:
            if service is change_request_withdraw:
                service(request_id=pk, by=request.user, request=request)
            else:
                service(request_id=pk, by=request.user, note=note, request=request)
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:common_changerequest_change", args=[pk]))

    def approve_view(self, request, pk: int):
        return self._decide(request, pk, change_request_approve, _("Approved and applied."))

    def reject_view(self, request, pk: int):
        return self._decide(request, pk, change_request_reject, _("Rejected: nothing was changed."))

    def withdraw_view(self, request, pk: int):
        return self._decide(request, pk, change_request_withdraw, _("Withdrawn."))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        change = self.get_object(request, object_id)
        pending = change is not None and change.status == ChangeRequest.Status.PENDING
        own = change is not None and change.requested_by == request.user.get_username()
        extra_context = {**(extra_context or {}),
                         "may_decide": pending and not own and can_approve(request.user),
                         "may_withdraw": pending and own,
                         "own_pending": pending and own and can_approve(request.user)}
        return super().change_view(request, object_id, form_url, extra_context)


def _dashboard_rows():
    pending = ChangeRequest.objects.filter(status=ChangeRequest.Status.PENDING).count()
    return [(_("Change requests waiting for an approver"), pending,
             reverse("admin:common_changerequest_changelist") + "?status__exact=pending")]


register_panel(_("Four eyes"), _dashboard_rows)
