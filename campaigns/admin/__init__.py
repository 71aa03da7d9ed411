"""The marketers' and operators' screens for campaigns (one module per area)."""

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.dashboard import register_panel

from . import campaigns, merchants, provisions, settlement  # noqa: F401


def _dashboard_rows():
    from campaigns.models import Bill, Campaign, PointsGrant

    return [
        (gettext("Active campaigns"), Campaign.objects.filter(status=Campaign.Status.ACTIVE).count(),
         "/admin/campaigns/campaign/?status__exact=active"),
        (gettext("Bills waiting for settlement"), Bill.objects.filter(status=Bill.Status.PENDING).count(),
         "/admin/campaigns/bill/?status__exact=pending"),
        (gettext("Bills set aside: cannot settle"), Bill.objects.filter(status=Bill.Status.DEAD).count(),
         "/admin/campaigns/bill/?status__exact=dead"),
        (gettext("Points grants not yet delivered"),
         PointsGrant.objects.filter(status=PointsGrant.Status.PENDING).count(),
         "/admin/campaigns/pointsgrant/?status__exact=pending"),
        (gettext("Points grants rejected"), PointsGrant.objects.filter(status=PointsGrant.Status.REJECTED).count(),
         "/admin/campaigns/pointsgrant/?status__exact=rejected"),
    ]


register_panel(_("Campaigns"), _dashboard_rows)
