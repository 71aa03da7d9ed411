from django.apps import AppConfig


class HistoryConfig(AppConfig):
    name = "history"
    verbose_name = "Payment history"
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = []
    marketer_view_models: list[str] = []
