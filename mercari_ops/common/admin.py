import csv
import json

from django.contrib import admin
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from . import beat_admin  # noqa: F401  (re-registers django-celery-beat's periodic tasks with our columns)
from .admin_utils import pretty_json
from .models import AuditLogEntry


class _Echo:
    def write(self, value):
        return value


@admin.register(AuditLogEntry)
class AuditLogEntryAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included: the log is evidence."""

    list_display = ("at", "actor", "actor_ip", "action", "target_type", "target_id", "target_repr")
    list_filter = ("action", "target_type", ("at", admin.DateFieldListFilter))
    search_fields = ("=actor", "=target_id", "action")
    date_hierarchy = "at"
    readonly_fields = ("at", "actor", "actor_ip", "action", "target_type", "target_id", "target_repr",
                       "before_pretty", "after_pretty", "note")
    exclude = ("before", "after")
    actions = ("export_csv",)
    list_per_page = 100
    show_full_result_count = False

    @admin.display(description=_("before"))
    def before_pretty(self, obj):
        return pretty_json(obj.before)

    @admin.display(description=_("after"))
    def after_pretty(self, obj):
        return pretty_json(obj.after)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description=_("Export the selected entries as CSV"), permissions=["view"])
    def export_csv(self, request, queryset):


        writer = csv.writer(_Echo())
        header = ["at", "actor", "actor_ip", "action", "target_type", "target_id", "target_repr", "before",
                  "after", "note"]

        def rows():
            yield writer.writerow(header)
            for e in queryset.order_by("at", "id").iterator(chunk_size=2000):
                yield writer.writerow([timezone.localtime(e.at).isoformat(), e.actor, e.actor_ip or "", e.action,
                                       e.target_type, e.target_id, e.target_repr,
                                       json.dumps(e.before, ensure_ascii=False),
                                       json.dumps(e.after, ensure_ascii=False), e.note])

        response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="audit-log.csv"'
        return response


# Service tokens (operators' screens) and the user admin with the two-factor set-up code action.
from . import tokens_admin, user_admin  # noqa: E402, F401
