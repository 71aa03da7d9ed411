from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


def _after_migrate(sender, **kwargs):
    from django.apps import apps

    # post_migrate is sent once per app; act after the last so every app's
    # permissions already exist.
    if sender is not list(apps.get_app_configs())[-1]:
        return
    from .periodic import periodic_tasks_sync
    from .roles import role_permissions_sync

    periodic_tasks_sync()
    role_permissions_sync()
    from .approvals import approver_group_sync

    approver_group_sync()  # after the roles: it takes approve_change back from the operators


class CommonConfig(AppConfig):
    name = "mercari_ops.common"
    label = "common"
    verbose_name = _("Platform")

    def ready(self):
        from django.contrib import admin
        from django.urls import reverse_lazy
        from django.utils.module_loading import autodiscover_modules

        admin.site.site_header = _("Mercari Ops back-office")
        admin.site.site_title = _("Mercari Ops back-office")
        admin.site.index_title = _("Campaigns, loyalty, LINE and payment history")
        # "View site" opens the admin's index: there is no public site ("/" redirects there too).
        admin.site.site_url = reverse_lazy("admin:index")
        from . import dashboard  # noqa: F401  (registers the inbox panel)
        from .approvals import admin as approvals_admin  # noqa: F401  (the change requests' screens)
        from .audit_admin import audited_deletes_install

        audited_deletes_install(admin.site)  # third-party admins' deletes go to the audit log

        # Import every app's tasks so periodic declarations are known to migrate and beat.
        autodiscover_modules("tasks")
        post_migrate.connect(_after_migrate, dispatch_uid="common.after_migrate")
        from .role_audit import connect as audit_role_changes

        audit_role_changes()  # group, permission and superuser/staff changes go to the audit log
        from django.contrib.auth.signals import user_logged_in

        from .i18n import user_language_restore

        user_logged_in.connect(user_language_restore, dispatch_uid="common.user_language_restore")
        from .metrics import platform as platform_metrics

        platform_metrics.register()  # /metrics: database, Redis, Celery queues and beat
