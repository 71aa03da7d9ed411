from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.functional import lazy
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.audit import audit_record
from mercari_ops.common.audit_admin import AuditedDeleteMixin
from mercari_ops.common.errors import ValidationFailed

from ..catalog import catalog_changed
from ..models import MerchantAlias, MerchantImportJob, MerchantMaster
from ..services import merchant_import_start
from ..services.merchant_csv import (
    FALSE_SPELLINGS,
    MAX_FILE_BYTES,
    MERCHANT_CSV_COLUMNS,
    PROBLEMS_KEPT,
    TRUE_SPELLINGS,
    MerchantCsvInvalid,
)
from ..services.merchants import INLINE_ROWS, merchant_import_job_retry
from .common import ReadOnlyAdmin


class CatalogInvalidating:
    """Any change of the merchant master moves the catalog generation (estimate caches reload)."""

    def save_model(self, request, obj, form, change):
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            catalog_changed()

    def save_related(self, request, form, formsets, change):
        with transaction.atomic():
            super().save_related(request, form, formsets, change)
            catalog_changed()

    def delete_model(self, request, obj):
        with transaction.atomic():
            super().delete_model(request, obj)
            catalog_changed()

    def delete_queryset(self, request, queryset):
        with transaction.atomic():
            super().delete_queryset(request, queryset)
            catalog_changed()


class AliasInline(admin.TabularInline):
    model = MerchantAlias
    extra = 1
    fields = ["merchant_id", "payment_method"]


def _format_help() -> SafeString:
    return format_html(
        gettext("Header <code>{}</code> (merchant_id and master_id required, any order). One row per merchant ID "
                "and payment method (empty = any method); empty master_name, is_marketplace or category leave the "
                "master's value as it is. is_marketplace: {} or {} (any case). At most {} MB. A file with any "
                "problem stores nothing; files over {} rows are imported in the background."),
        ",".join(MERCHANT_CSV_COLUMNS), "/".join(TRUE_SPELLINGS), "/".join(FALSE_SPELLINGS),
        MAX_FILE_BYTES // (1024 * 1024), f"{INLINE_ROWS:,}",
    )


FORMAT_HELP = lazy(_format_help, SafeString)()  # in the language of the request that renders the form


class ImportForm(forms.Form):
    file = forms.FileField(label=_("File"), help_text=FORMAT_HELP)

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if upload.size > MAX_FILE_BYTES:
            raise forms.ValidationError(gettext("The file is %(size)s bytes; at most %(max)s are accepted.")
                                        % {"size": f"{upload.size:,}", "max": f"{MAX_FILE_BYTES:,}"})
        return upload


@admin.register(MerchantMaster)
class MerchantMasterAdmin(AuditedDeleteMixin, CatalogInvalidating, admin.ModelAdmin):
    list_display = ["master_id", "name", "is_marketplace", "category", "alias_count"]
    list_filter = ["is_marketplace", "category"]
    search_fields = ["master_id", "name", "aliases__merchant_id"]
    inlines = [AliasInline]
    change_list_template = "admin/campaigns/merchantmaster_change_list.html"

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(alias_total=Count("aliases"))

    @admin.display(description=_("merchant IDs"), ordering="alias_total")
    def alias_count(self, obj):
        return obj.alias_total

    def get_urls(self):
        return [
            path("import-csv/", self.admin_site.admin_view(self.import_view), name="campaigns_merchantmaster_import"),
            path("import-csv/<int:job_id>/", self.admin_site.admin_view(self.import_job_view),
                 name="campaigns_merchantmaster_import_job"),
        ] + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        refused = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                started = merchant_import_start(data=upload.read(), file_name=upload.name or "",
                                                by=request.user.get_username(), request=request)
            except MerchantCsvInvalid as exc:
                refused = exc
                self.message_user(request, ngettext("Import refused, nothing changed: %(n)d problem in the file",
                                                    "Import refused, nothing changed: %(n)d problems in the file",
                                                    exc.problem_count) % {"n": exc.problem_count}, messages.ERROR)
            except ValidationFailed as exc:
                self.message_user(request, gettext("Import refused, nothing changed: %(problem)s")
                                  % {"problem": exc.message}, messages.ERROR)
            else:
                if started.job is not None:
                    self.message_user(request, gettext("%(n)s rows checked and queued for import")
                                      % {"n": f"{started.job.rows_total:,}"}, messages.SUCCESS)
                    return redirect("admin:campaigns_merchantmaster_import_job", started.job.pk)
                self.message_user(request, gettext("Imported: %(counts)s") % {"counts": started.counts},
                                  messages.SUCCESS)
                return redirect("admin:campaigns_merchantmaster_changelist")
        context = {**self.admin_site.each_context(request), "title": gettext("Import merchant master CSV"),
                   "form": form,
                   "opts": self.model._meta, "refused": refused, "problems_kept": PROBLEMS_KEPT,
                   "jobs": MerchantImportJob.objects.defer("csv_text")[:10]}
        return TemplateResponse(request, "admin/campaigns/import_csv.html", context)

    def import_job_view(self, request, job_id: int):
        if not self.has_view_permission(request):
            raise PermissionDenied
        job = get_object_or_404(MerchantImportJob.objects.defer("csv_text"), pk=job_id)
        context = {**self.admin_site.each_context(request),
                   "title": gettext("Merchant master import %(id)s") % {"id": job.pk},
                   "opts": self.model._meta, "job": job,
                   "finished": job.status in (MerchantImportJob.Status.DONE, MerchantImportJob.Status.FAILED)}
        return TemplateResponse(request, "admin/campaigns/import_job.html", context)


@admin.register(MerchantImportJob)
class MerchantImportJobAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """Imports run in the background: their progress, result or failure. Written only by the import."""

    list_display = ["pk", "file_name", "status", "progress", "created_by", "created_at", "finished_at", "page"]
    list_filter = ["status"]
    search_fields = ["file_name", "created_by"]
    fields = ["file_name", "status", "rows_total", "rows_done", "result", "problems", "error", "created_by",
              "created_at", "queued_at", "started_at", "finished_at"]
    actions = ["run_again"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("csv_text")

    @admin.display(description=_("progress"))
    def progress(self, obj):
        percent = obj.progress_percent
        return (gettext("%(done)s / %(total)s rows") % {"done": f"{obj.rows_done:,}", "total": f"{obj.rows_total:,}"}
                + (f" ({percent}%)" if percent is not None else ""))

    @admin.display(description=_("page"))
    def page(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:campaigns_merchantmaster_import_job",
                                                          args=[obj.pk]), gettext("open"))

    def has_import_permission(self, request) -> bool:
        return request.user.has_perm("campaigns.add_merchantmaster")

    @admin.action(description=_("Run the selected failed imports again"), permissions=["import"])
    def run_again(self, request, queryset):
        queued = 0
        for pk in queryset.values_list("pk", flat=True):
            if merchant_import_job_retry(job_id=pk):
                queued += 1
                audit_record(action="merchant_import_job.retry", target_type="campaigns.merchantimportjob",
                             target_id=str(pk), before={"status": "failed"}, after={"status": "queued"},
                             request=request)
        self.message_user(request, gettext("%(n)d import(s) queued again (only failed ones are)") % {"n": queued},
                          messages.SUCCESS)


@admin.register(MerchantAlias)
class MerchantAliasAdmin(AuditedDeleteMixin, CatalogInvalidating, admin.ModelAdmin):
    list_display = ["merchant_id", "payment_method", "master"]
    search_fields = ["merchant_id", "master__master_id"]
    list_filter = ["payment_method"]
    list_select_related = ["master"]
    autocomplete_fields = ["master"]
