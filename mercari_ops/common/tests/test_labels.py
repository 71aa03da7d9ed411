"""Labels an operator reads (issue 19 point 7): names, object strings, progress, no Add where adding makes no
sense, and "View site" / "/" leading to the admin."""

import re

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.test import RequestFactory
from django.utils import timezone, translation

from campaigns.models import MerchantAlias
from line_integration.models import AudienceGroup, AudienceJob, LineRequest, WebhookEvent
from loyalty.models import RecomputeJob, StageRuleVersion

pytestmark = pytest.mark.django_db


def test_root_and_view_site_lead_to_the_admin_index(admin_client):
    response = admin_client.get("/")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    index = admin_client.get("/admin/", headers={"accept-language": "en"}).content.decode()
    user_tools = index[index.index('id="user-tools"'):]
    assert re.search(r'<a href="/admin/">\s*View site', user_tools), "View site links the admin index"


@translation.override("en")  # the English names; the Japanese ones: test_i18n_coverage.py
def test_object_strings_and_plural_names():
    assert MerchantAlias._meta.verbose_name_plural == "merchant aliases"
    event = WebhookEvent.objects.create(webhook_event_id="01HX", event_type="follow",
                                        line_user_id="U" + "a" * 32)
    assert str(event) == "follow 01HX" and "Uaaa" not in str(event)
    request = LineRequest.objects.create(kind="multicast", body={}, recipient_count=3, next_attempt_at=timezone.now(),
                                         created_at=timezone.now())
    assert str(request) == f"multicast #{request.pk} to 3 (pending)"


@pytest.mark.parametrize(("fields", "label"), [
    ({"status": "done", "total": 0, "done": 0}, "Done: there were no customers to recompute"),
    ({"status": "running", "total": 3000, "done": 1500, "changed": 41},
     "Running: 1,500 of 3,000 customers (50%), 41 changed stage"),
    ({"status": "queued", "total": 0}, "Queued: not started"),
])
def test_recomputation_progress_reads_as_a_sentence(fields, label):
    version = StageRuleVersion.objects.create(version=99, definition={}, created_by="t")
    job = RecomputeJob.objects.create(rule_version=version, **fields)
    assert job.progress_label() == label
    assert str(job) == f"Stage recomputation for rules v99: {label}"


@pytest.mark.parametrize("model", [WebhookEvent, AudienceJob, AudienceGroup])
def test_no_add_button_where_rows_come_from_elsewhere(admin_client, model):
    request = RequestFactory().get("/")
    request.user = User.objects.get(username="admin")
    assert admin.site._registry[model].has_add_permission(request) is False
    page = admin_client.get(f"/admin/{model._meta.app_label}/{model._meta.model_name}/").content.decode()
    assert f"/admin/{model._meta.app_label}/{model._meta.model_name}/add/" not in page
