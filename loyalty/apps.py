from django.apps import AppConfig


class LoyaltyConfig(AppConfig):
    name = "loyalty"
    verbose_name = "Loyalty stages"
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = []
    marketer_view_models: list[str] = []
