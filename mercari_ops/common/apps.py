from django.apps import AppConfig
from django.db.models.signals import post_migrate


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


class CommonConfig(AppConfig):
    name = "mercari_ops.common"
    label = "common"
    verbose_name = "Platform"

    def ready(self):
        from django.conf import settings
        from django.contrib import admin
        from django.utils.module_loading import autodiscover_modules

        admin.site.site_header = settings.ADMIN_SITE_TITLE
        admin.site.site_title = settings.ADMIN_SITE_TITLE
        admin.site.index_title = "Campaigns, loyalty, LINE and payment history"
        from . import dashboard  # noqa: F401  (registers the inbox panel)

        # Import every app's tasks so periodic declarations are known to migrate and beat.
        autodiscover_modules("tasks")
        post_migrate.connect(_after_migrate, dispatch_uid="common.after_migrate")
