from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path

from mercari_ops.common.errors import ValidationFailed

from ..catalog import catalog_changed
from ..models import MerchantAlias, MerchantMaster
from ..services import merchant_master_import_csv


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


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with header merchant_id,payment_method,master_id"
                                     "[,master_name,is_marketplace,category]")


@admin.register(MerchantMaster)
class MerchantMasterAdmin(CatalogInvalidating, admin.ModelAdmin):
    list_display = ["master_id", "name", "is_marketplace", "category", "alias_count"]
    list_filter = ["is_marketplace", "category"]
    search_fields = ["master_id", "name", "aliases__merchant_id"]
    inlines = [AliasInline]
    change_list_template = "admin/campaigns/merchantmaster_change_list.html"

    def get_queryset(self, request):
        from django.db.models import Count

        return super().get_queryset(request).annotate(alias_total=Count("aliases"))

    @admin.display(description="merchant IDs", ordering="alias_total")
    def alias_count(self, obj):
        return obj.alias_total

    def get_urls(self):
        return [path("import-csv/", self.admin_site.admin_view(self.import_view),
                     name="campaigns_merchantmaster_import")] + super().get_urls()

    def import_view(self, request):
        if not self.has_add_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            try:
                text = form.cleaned_data["file"].read().decode("utf-8")
                counts = merchant_master_import_csv(text=text)
            except UnicodeDecodeError:
                self.message_user(request, "the file is not UTF-8 text", messages.ERROR)
            except ValidationFailed as exc:
                self.message_user(request, f"Import failed, nothing changed: {exc.message}", messages.ERROR)
            else:
                self.message_user(request, f"Imported: {counts}", messages.SUCCESS)
                return redirect("admin:campaigns_merchantmaster_changelist")
        context = {**self.admin_site.each_context(request), "title": "Import merchant master CSV",
                   "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/campaigns/import_csv.html", context)


@admin.register(MerchantAlias)
class MerchantAliasAdmin(CatalogInvalidating, admin.ModelAdmin):
    list_display = ["merchant_id", "payment_method", "master"]
    search_fields = ["merchant_id", "master__master_id"]
    list_filter = ["payment_method"]
    list_select_related = ["master"]
    autocomplete_fields = ["master"]
