"""The two operator roles and who may see personal data.

Groups are created by a migration (common/0001); their permissions are
(re)assigned after every migrate from what each app declares on its AppConfig:

    marketer_models = ["campaign", "campaignstagerate"]   # add/change/delete/view
    marketer_view_models = ["campaignreward"]              # view only

Operators get every permission of every project app, the inbox, "common" (so view_personal_data:
raw personal data) and beat. Marketers never get view_personal_data.
"""

from __future__ import annotations

from django.apps import apps

MARKETERS = "marketers"
OPERATORS = "operators"
OPERATOR_APP_LABELS = {"inbox", "common", "django_celery_beat", "authtoken"}


PERSONAL_DATA_PERMISSION = "common.view_personal_data"


def can_see_pii(user) -> bool:
    """Raw LINE IDs, names and payment details: holders of common.view_personal_data (operators get it with
    every permission of app "common"; marketers never), superusers included. Enforced in the admin by
    mercari_ops.common.privacy_admin.PersonalDataAdminMixin."""
    if not getattr(user, "is_authenticated", False):
        return False
    return user.has_perm(PERSONAL_DATA_PERMISSION)


def mask(value: str | None, keep: int = 4) -> str:
    if not value:
        return ""
    return value[:keep] + "\u2022" * 6 if len(value) > keep else "\u2022" * 6


def role_permissions_sync() -> None:
    from django.contrib.auth.models import Group, Permission

    marketers, _ = Group.objects.get_or_create(name=MARKETERS)
    operators, _ = Group.objects.get_or_create(name=OPERATORS)
    marketer_perms = []
    operator_labels = set(OPERATOR_APP_LABELS)
    for config in apps.get_app_configs():
        full = getattr(config, "marketer_models", None)
        view_only = getattr(config, "marketer_view_models", None)
        if full is None and view_only is None and config.label not in OPERATOR_APP_LABELS:
            continue
        operator_labels.add(config.label)
        perms = Permission.objects.filter(content_type__app_label=config.label)
        for perm in perms:
            model = perm.content_type.model
            if model in (full or []) or (model in (view_only or []) and perm.codename.startswith("view_")):
                marketer_perms.append(perm)
    # Whatever an app declares, raw personal data stays with operators.
    marketers.permissions.set([p for p in marketer_perms if p.codename != "view_personal_data"])
    operators.permissions.set(Permission.objects.filter(content_type__app_label__in=operator_labels))
