from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = _("Campaigns and cashback")
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = ["campaign", "campaignstagerate", "merchantmaster", "merchantalias",
                                  "campaignbacktest"]
    marketer_view_models: list[str] = ["campaignreward", "campaignversion", "provisiondaily", "provisionjournal",
                                       "bill", "cardstatus", "pointsgrant", "merchantimportjob"]

    def ready(self):
        from mercari_ops.inbox.registry import register_topic

        from . import tasks_sweep  # noqa: F401  (periodic sweepers outside tasks.py: beat and the worker know them)
        from .services.events import (
            BILL_SCHEMA,
            CARD_STATUS_SCHEMA,
            bill_record,
            bill_record_batch,
            card_status_record,
            card_status_record_many,
        )

        register_topic("card-status", schema=CARD_STATUS_SCHEMA, handle=card_status_record,
                       handle_batch=lambda events: card_status_record_many(events=events), keep_payload=True,
                       order_key="changed_at")
        register_topic("card-bill-settled", schema=BILL_SCHEMA, handle=bill_record, handle_batch=bill_record_batch,
                       keep_payload=True, order_key="settled_at")
        # Celery's autodiscovery imports only tasks.py; the merchant import tasks live beside it.
        from . import tasks_import  # noqa: F401
        from .metrics import register as metrics_register

        metrics_register()  # /metrics: bills, grants and the points breaker at scrape time
        from .approvals import register as register_change_kinds

        register_change_kinds()  # four eyes: activation and changes of live campaigns
