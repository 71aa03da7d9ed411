import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import User

from loyalty.models import Customer, RecomputeJob, StagePin, StageRuleVersion
from loyalty.services import activity_apply
from loyalty.tests.factories import RULES, event, publish_rules

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    user = User.objects.create_superuser("ops", "ops@example.com", "pw")
    client.force_login(user)
    return client


def test_customer_pages_and_why_view_render(admin_client):
    publish_rules()
    activity_apply(events=[event(customer_id="c-1", amount=60000)])
    customer = Customer.objects.get()
    assert admin_client.get("/admin/loyalty/customer/").status_code == 200
    page = admin_client.get(f"/admin/loyalty/customer/{customer.pk}/change/")
    assert page.status_code == 200 and b"rules window" in page.content
    why = admin_client.get(f"/admin/loyalty/customer/{customer.pk}/why/")
    assert why.status_code == 200
    text = why.content.decode()
    assert "Gold" in text and "Purchase amount (¥): ¥60,000 of ¥50,000, met" in text
    for url in ("/admin/loyalty/monthlytotal/", "/admin/loyalty/stagechange/", "/admin/loyalty/recomputejob/",
                "/admin/loyalty/stagepin/", "/admin/loyalty/stageruleversion/"):
        assert admin_client.get(url).status_code == 200, url


def test_saving_rules_in_the_admin_publishes_a_version_and_a_job(admin_client):
    publish_rules()
    form = admin_client.get("/admin/loyalty/stageruleversion/add/")
    assert form.status_code == 200 and b"Platinum" in form.content  # prefilled with the current rules
    import json

    changed = {**RULES, "window_months": 6}
    response = admin_client.post("/admin/loyalty/stageruleversion/add/",
                                 {"definition": json.dumps(changed), "note": "shorter window"})
    assert response.status_code == 302
    # four eyes: a change request until another approver approves it
    assert not StageRuleVersion.objects.filter(version=2).exists()
    from mercari_ops.common.approvals import change_request_approve
    from mercari_ops.common.models import ChangeRequest

    approver = User.objects.create_superuser("ann", "ann@example.com", "pw")
    change_request_approve(request_id=ChangeRequest.objects.get(kind="stage_rules.publish").pk, by=approver)
    version = StageRuleVersion.objects.get(version=2)
    assert (version.created_by, version.definition["window_months"], version.previous_definition["window_months"]) \
        == ("ops", 6, 12)
    assert RecomputeJob.objects.filter(rule_version=version).exists()
    detail = admin_client.get(f"/admin/loyalty/stageruleversion/{version.pk}/change/").content.decode()
    assert "before (replaced version)" in detail.lower() and "Queued: not started" in re.sub(r"\s+", " ", detail)


def test_invalid_rules_are_refused_in_the_admin_naming_the_field(admin_client):
    bad = {**RULES, "stages": [{"stage": 10, "name": "R"}, {"stage": 20, "name": "S", "thresholds": {"x": 1}}]}
    import json

    response = admin_client.post("/admin/loyalty/stageruleversion/add/", {"definition": json.dumps(bad)})
    assert response.status_code == 200 and b"stages.1.thresholds.x" in response.content
    assert not StageRuleVersion.objects.exists()


def test_pin_from_the_admin_is_recorded_with_its_author(admin_client):
    publish_rules()
    expires = datetime.now(UTC) + timedelta(days=10)
    response = admin_client.post("/admin/loyalty/stagepin/add/", {
        "customer_ref": "c-77", "floor": 30, "reason": "support case 42",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": expires.strftime("%H:%M:%S")})
    assert response.status_code == 302, response.content[:2000]
    pin = StagePin.objects.get()
    assert (pin.customer.customer_id, pin.floor, pin.created_by) == ("c-77", 30, "ops")
    assert Customer.objects.get(customer_id="c-77").stage == 30
    bad = admin_client.post("/admin/loyalty/stagepin/add/", {
        "customer_ref": "c-77", "floor": 25, "reason": "x",
        "expires_at_0": expires.strftime("%Y-%m-%d"), "expires_at_1": "00:00:00"})
    assert bad.status_code == 200 and b"floor" in bad.content
    admin_client.post("/admin/loyalty/stagepin/", {"action": "revoke", "_selected_action": [pin.pk]})
    pin.refresh_from_db()
    assert pin.revoked_by == "ops" and Customer.objects.get(customer_id="c-77").stage == 10
