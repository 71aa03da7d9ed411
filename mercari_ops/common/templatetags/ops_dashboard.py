import logging

from django import template

from mercari_ops.common.dashboard import PANELS

register = template.Library()
logger = logging.getLogger(__name__)


@register.inclusion_tag("admin/ops_dashboard.html", takes_context=True)
def ops_dashboard(context):
    user = context["request"].user
    panels = []
    if user.is_superuser or user.groups.filter(name="operators").exists():
        for title, rows in PANELS:
            try:
                panels.append((title, rows()))
            except Exception:  # a broken panel must not take the admin index down
                logger.exception("dashboard panel %s failed", title)
    return {"panels": panels}
