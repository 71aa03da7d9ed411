from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class HistoryConfig(AppConfig):
    name = "history"
    verbose_name = _("Payment history")
    # Models marketers may edit / only view (see mercari_ops/common/roles.py); operators see everything.
    marketer_models: list[str] = []
    marketer_view_models: list[str] = []

    def ready(self):
        from mercari_ops.inbox.registry import register_topic

        from .canonical import EVENT_SCHEMA, TOPIC
        from .metrics import register as metrics_register
        from .services import payment_event_apply

        register_topic(TOPIC, schema=EVENT_SCHEMA, handle=payment_event_apply, keep_payload=False,
                       order_key="occurred_at")
        metrics_register()  # /metrics: waiting events and pending repayments at scrape time
