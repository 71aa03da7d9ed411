"""Every admin page an operator can reach renders, on demo data (catches broken list_display, filters...)."""

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.fixture
def superuser_client(client):
    call_command("seed_demo", stdout=open("/dev/null", "w"))
    client.force_login(User.objects.create_superuser("root", password="pw"))
    return client


def test_every_changelist_and_one_change_page_render(superuser_client):
    failures = []
    for model, model_admin in admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        url = reverse(f"admin:{info[0]}_{info[1]}_changelist")
        response = superuser_client.get(url, follow=True)  # a singleton's list redirects to its one page
        if response.status_code != 200:
            failures.append((url, response.status_code))
            continue
        obj = model_admin.get_queryset(response.wsgi_request).first()
        if obj is not None:
            change = reverse(f"admin:{info[0]}_{info[1]}_change", args=[obj.pk])
            status = superuser_client.get(change).status_code
            if status != 200:
                failures.append((change, status))
    assert failures == []
    assert superuser_client.get("/admin/").status_code == 200


def test_dashboard_shows_every_app_panel_to_operators(superuser_client):
    content = superuser_client.get("/admin/").content.decode()
    for title in ("Event inbox", "Loyalty", "Campaigns", "Payment history", "Bills waiting for settlement",
                  "Payment events waiting for their parent", "Latest stage recomputation"):
        assert title in content
