import pytest
from django.contrib.auth.models import Group, User

from line_integration.models import LineLinkageUser

from .conftest import line_user_id


@pytest.mark.django_db
@pytest.mark.parametrize(("role", "sees_raw"), [("marketers", False), ("operators", True)])
def test_linkage_users_mask_line_ids_for_marketers(client, link_customers, role, sees_raw):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    link_customers(["c-1"])
    user = User.objects.create(username=role, is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client.force_login(user)
    raw = line_user_id("c-1")
    for url in ("/admin/line_integration/linelinkageuser/",
                f"/admin/line_integration/linelinkageuser/{LineLinkageUser.objects.get().pk}/change/",
                "/admin/line_integration/lineuser/"):
        response = client.get(url)
        assert response.status_code == 200
        assert (raw in response.content.decode()) is sees_raw, url
