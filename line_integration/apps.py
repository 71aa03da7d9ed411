from celery.signals import worker_process_init
from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from .bootstrap import worker_process_tune


class LineIntegrationConfig(AppConfig):
    name = "line_integration"
    verbose_name = _("LINE integration")
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = ["messagetemplate"]
    marketer_view_models: list[str] = ["outboundmessage", "campaigndelivery", "linerequest", "lineuser",
                                       "linelinkageuser", "audiencegroup", "audiencejob", "webhookevent"]

    def ready(self) -> None:
        # Sender processes are tuned when they start (bootstrap.py says why).
        worker_process_init.connect(worker_process_tune, dispatch_uid="line_integration.worker_process_tune")
        from .metrics import register as metrics_register

        metrics_register()  # /metrics: outbound backlog and audience jobs at scrape time
