"""The `approvers` group: who decides change requests. Synced after every migrate (common.apps)."""

from __future__ import annotations

APPROVERS = "approvers"


def approver_group_sync() -> None:
    """Approvers get `common.approve_change` (and may read change requests); nobody else holds it.

    The operators' sync grants every permission of the `common` app, so approve_change is taken back from
    them here: operating the platform and approving changes are separate roles (an operator may also be
    an approver by being in both groups). Marketers read change requests (their own pending ones among them).
    """
    from django.contrib.auth.models import Group, Permission

    from ..roles import MARKETERS, OPERATORS

    approve = Permission.objects.get(content_type__app_label="common", codename="approve_change")
    view = Permission.objects.get(content_type__app_label="common", codename="view_changerequest")
    approvers, _ = Group.objects.get_or_create(name=APPROVERS)
    approvers.permissions.add(approve, view)
    for name in (MARKETERS, OPERATORS):
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(view)
    Group.objects.get(name=OPERATORS).permissions.remove(approve)
