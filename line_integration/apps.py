from django.apps import AppConfig


class LineIntegrationConfig(AppConfig):
    name = "line_integration"
    verbose_name = "LINE integration"
    # Models marketers may edit / only view (see mercari_ops/common/roles.py).
    marketer_models: list[str] = ["messagetemplate"]
    marketer_view_models: list[str] = ["outboundmessage", "campaigndelivery", "linerequest", "lineuser",
                                       "linelinkageuser", "audiencegroup", "audiencejob", "webhookevent"]
