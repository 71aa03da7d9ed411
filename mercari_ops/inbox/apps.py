from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InboxConfig(AppConfig):
    name = "mercari_ops.inbox"
    label = "inbox"
    verbose_name = _("Event inbox")

    def ready(self):
        from . import builtin_topics  # noqa: F401  (registers platform-ping)
        from .metrics import register as metrics_register

        metrics_register()  # /metrics: backlogs and dead letters at scrape time
