from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    verbose_name = "Campaigns and cashback"
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = []
    marketer_view_models: list[str] = []
