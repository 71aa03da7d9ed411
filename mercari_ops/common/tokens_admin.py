"""Service tokens in the admin (operators only: the common app's permissions are theirs).

Adding a token shows its key once, on the page that answers the form (never stored, never in a message
cookie); revoking takes effect at once on every process. Rows are never deleted: a revoked token is history.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext
from rest_framework.authtoken.models import TokenProxy

from .models import ServiceToken
from .services import service_token_create, service_token_revoke
from .tokens import SCOPE_LABELS, SCOPES, key_hash

_FIELDS = ("service", "user", "prefix", "scopes", "created_at", "created_by", "expires_at", "revoked_at",
           "revoked_by", "last_used_at")


class ServiceTokenAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(label=_("scopes"), choices=[(s, SCOPE_LABELS[s]) for s in SCOPES],
                                       widget=forms.CheckboxSelectMultiple)
    rotate = forms.BooleanField(label=_("Replace the service's other tokens"), required=False)
    grace_seconds = forms.IntegerField(label=_("Grace period (seconds) for the replaced tokens"), min_value=0,
                                       initial=0, required=False)

    class Meta:
        model = ServiceToken
        fields = ("service", "scopes", "expires_at")

    def clean_service(self) -> str:
        service = self.cleaned_data["service"].strip()
        if not service or any(c.isspace() for c in service):
            raise forms.ValidationError(_("One word, e.g. marketplace-item-page."))
        return service


class TokenStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("live", _("Live")), ("revoked", _("Revoked"))]

    def queryset(self, request, queryset):
        if self.value() == "live":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ServiceToken)
class ServiceTokenAdmin(admin.ModelAdmin):
    list_display = ("service", "prefix", "scope_list", "created_at", "created_by", "expires_at", "revoked_at",
                    "last_used_at")
    list_filter = (TokenStateFilter, "service")
    search_fields = ("service", "=prefix")
    actions = ("revoke",)
    list_select_related = ("user",)

    @admin.display(description=_("scopes"))
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ServiceTokenAddForm
            kwargs["fields"] = ("service", "scopes", "expires_at", "rotate", "grace_seconds")
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return ("service", "scopes", "expires_at", "rotate", "grace_seconds") if obj is None else _FIELDS

    def get_readonly_fields(self, request, obj=None):
        return () if obj is None else _FIELDS

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        key = service_token_create(name=data["service"], scopes=data["scopes"], expires_at=data.get("expires_at"),
                                   rotate=data.get("rotate") or False, grace_seconds=data.get("grace_seconds") or 0,
                                   request=request)
        created = ServiceToken.objects.get(key_hash=key_hash(key))
        obj.pk, obj.prefix, obj.user_id = created.pk, created.prefix, created.user_id
        request._service_token_key = key

    def response_add(self, request, obj, post_url_continue=None):
        key = getattr(request, "_service_token_key", None)
        if key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.opts, "token": obj, "key": key,
                   "title": _("Service token created")}
        response = TemplateResponse(request, "admin/common/servicetoken/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description=_("Revoke the selected tokens (at once, on every process)"), permissions=["change"])
    def revoke(self, request, queryset):
        revoked = sum(service_token_revoke(token=token, request=request) for token in queryset)
        self.message_user(request, ngettext("%d token revoked.", "%d tokens revoked.", revoked) % revoked,
                          messages.SUCCESS)


# DRF's own token screen would issue raw keys that no longer authenticate anything (the table is emptied by
# common/0004): service tokens are made here only.
if admin.site.is_registered(TokenProxy):
    admin.site.unregister(TokenProxy)
