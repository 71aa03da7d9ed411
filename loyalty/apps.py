from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = _("Loyalty stages")
    # Models marketers may edit / only view (see mercari_ops/common/roles.py). Pins are operators' only.
    marketer_models: list[str] = ["stageruleversion"]
    marketer_view_models: list[str] = ["customer", "monthlytotal", "stagechange", "stagepin", "recomputejob"]

    def ready(self):
        from . import topic  # noqa: F401  (registers loyalty-activity)
        from .approvals import register as register_change_kinds
        from .metrics import register as metrics_register

        register_change_kinds()  # four eyes: publishing stage rules
        metrics_register()  # /metrics: recomputation progress at scrape time
