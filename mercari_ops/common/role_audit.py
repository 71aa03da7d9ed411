"""Role changes go to the audit log: a user's groups, permissions, is_superuser and is_staff.

Signals, not a service, because roles change through Django's own code paths (the User admin, the shell,
`createsuperuser`, group.user_set) that no service of ours wraps. Who made the change and from where come
from the admin request being served (`admin_request`, set by AdminSecondFactorMiddleware); elsewhere the
actor is "system".
"""

from __future__ import annotations

from contextvars import ContextVar

from django.contrib.auth import get_user_model
from django.db.models.signals import m2m_changed, post_save, pre_save

from .audit import audit_record

admin_request: ContextVar = ContextVar("admin_request", default=None)
ROLE_FLAGS = ("is_superuser", "is_staff", "is_active")


def _names(model, pks) -> list[str]:
    if model._meta.model_name == "permission":
        return sorted(f"{app}.{codename}" for app, codename in model.objects.filter(pk__in=pks)
                      .values_list("content_type__app_label", "codename"))
    return sorted(model.objects.filter(pk__in=pks).values_list("name", flat=True))


def _m2m_changed(sender, instance, action, reverse, model, pk_set, **kwargs):
    if action not in ("post_add", "post_remove", "pre_clear") or (action != "pre_clear" and not pk_set):
        return
    User = get_user_model()
    relation = "groups" if sender is User.groups.through else "user_permissions"
    if reverse:  # group.user_set.add(user), permission.user_set.clear(): instance is the group or permission
        users = User.objects.filter(pk__in=pk_set) if pk_set else instance.user_set.all()
        names = [instance.name if relation == "groups" else f"{instance.content_type.app_label}.{instance.codename}"]
        for user in users:
            _record(user, relation, action, names)
        return
    if action == "pre_clear":
        pks = list(getattr(instance, relation).values_list("pk", flat=True))
        if pks:
            _record(instance, relation, action, _names(model, pks))
    else:
        _record(instance, relation, action, _names(model, pk_set))


def _record(user, relation: str, action: str, names: list[str]) -> None:
    verb = "added" if action == "post_add" else "removed"
    audit_record(action="user.role_change", target=user, after={relation: {verb: names}},
                 request=admin_request.get(), note=f"{relation} {verb}")


def _remember_flags(sender, instance, update_fields=None, **kwargs):
    if instance.pk is None or (update_fields is not None and not set(update_fields) & set(ROLE_FLAGS)):
        instance._role_flags_before = None
        return
    instance._role_flags_before = sender.objects.filter(pk=instance.pk).values(*ROLE_FLAGS).first()


def _audit_flags(sender, instance, created, **kwargs):
    before = getattr(instance, "_role_flags_before", None)
    after = {flag: getattr(instance, flag) for flag in ROLE_FLAGS}
    if created:
        if instance.is_staff or instance.is_superuser:
            audit_record(action="user.role_change", target=instance, before=None, after=after,
                         request=admin_request.get(), note="created")
        return
    if before is None or before == after:
        return
    changed = [flag for flag in ROLE_FLAGS if before[flag] != after[flag]]
    audit_record(action="user.role_change", target=instance, before={f: before[f] for f in changed},
                 after={f: after[f] for f in changed}, request=admin_request.get())


def connect() -> None:
    User = get_user_model()
    m2m_changed.connect(_m2m_changed, sender=User.groups.through, dispatch_uid="audit.user_groups")
    m2m_changed.connect(_m2m_changed, sender=User.user_permissions.through, dispatch_uid="audit.user_perms")
    pre_save.connect(_remember_flags, sender=User, dispatch_uid="audit.user_flags_before")
    post_save.connect(_audit_flags, sender=User, dispatch_uid="audit.user_flags_after")
