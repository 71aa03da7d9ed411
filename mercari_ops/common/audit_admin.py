"""Deleting from the admin: rows that record money, messages or evidence are never deleted by hand (retention
jobs delete them through services); where a hand delete makes sense it goes to the audit log with the row's
before-state, in the delete's transaction.

- `NeverDeletedAdminMixin`: no delete button, no `delete_selected` action, the delete view answers 403.
- `AuditedDeleteMixin`: the delete view and `delete_selected` write one audit entry per deleted row.
- `audited_deletes_install(site)`: third-party admins (auth, OTP devices, axes, beat) get the audited delete
  without editing their code; our own admins must choose one of the two mixins (a test walks the registry).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db import models, transaction

from .audit import audit_record

# Never copied into the audit log: password hashes, OTP seeds and the like.
_SECRET_NAMES = {"password", "key", "secret", "token"}
_SECRET_SUFFIXES = ("_hash", "_secret", "_key")
# Packages whose admins decide for themselves (the test holds them to it); anything else is wrapped.
OWN_PACKAGES = ("mercari_ops.", "loyalty.", "campaigns.", "line_integration.", "history.")


def _is_secret(name: str) -> bool:
    return name in _SECRET_NAMES or name.endswith(_SECRET_SUFFIXES)


def row_snapshot(obj: models.Model) -> dict[str, Any]:
    """The row's own columns (foreign keys as ids), secrets left out: the before-state of a delete."""
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields
            if not _is_secret(field.name)}


class NeverDeletedAdminMixin:
    """Evidence of money, messages or events: kept until a retention job removes it."""

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class AuditedDeleteMixin:
    """Hand deletes leave an audit entry each ("<app>.<model>.delete" unless `audit_delete_action` is set)."""

    audit_delete_action: str = ""

    def _audit_delete(self, request, obj: models.Model) -> None:
        action = self.audit_delete_action or f"{obj._meta.label_lower}.delete"
        audit_record(action=action, target=obj, before=row_snapshot(obj), after=None, request=request)

    def delete_model(self, request, obj) -> None:
        with transaction.atomic():
            self._audit_delete(request, obj)  # before the delete: the pk is gone afterwards
            super().delete_model(request, obj)

    def delete_queryset(self, request, queryset) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._audit_delete(request, obj)
            super().delete_queryset(request, queryset)


def audited_deletes_install(site: admin.AdminSite | None = None) -> None:
    """Give every third-party ModelAdmin of the site the audited delete (call once, after autodiscovery)."""
    site = site or admin.site
    for model, model_admin in list(site._registry.items()):
        cls = type(model_admin)
        if isinstance(model_admin, AuditedDeleteMixin) or cls.__module__.startswith(OWN_PACKAGES):
            continue
        audited = type(cls.__name__, (AuditedDeleteMixin, cls), {"__module__": cls.__module__})
        site._registry[model] = audited(model, site)
