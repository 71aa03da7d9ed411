"""Four eyes on stage rules: saving the rules form asks an approver; the request shows how many customers move."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from loyalty.models import Customer, MonthlyTotal, RecomputeJob, StageRuleVersion
from loyalty.tests.factories import RULES, publish_rules
from mercari_ops.common.approvals import (
    APPROVERS,
    ApprovalRefused,
    ChangeRequestStale,
    approver_group_sync,
    change_request_approve,
    change_request_reject,
)
from mercari_ops.common.models import AuditLogEntry, ChangeRequest
from mercari_ops.common.roles import MARKETERS, role_permissions_sync

pytestmark = pytest.mark.django_db
ADD = "/admin/loyalty/stageruleversion/add/"
SILVER_EASIER = {**RULES, "stages": [RULES["stages"][0], {**RULES["stages"][1], "thresholds": {"buy_amount": 5000}},
                                     *RULES["stages"][2:]]}


def staff(name, group):
    user = get_user_model().objects.create_user(name, password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def people(client):
    role_permissions_sync()
    approver_group_sync()
    mika = staff("mika", MARKETERS)
    client.force_login(mika)
    return {"mika": mika, "anna": staff("anna", APPROVERS)}


@pytest.fixture
def customers():
    """Rules v1 in force; c-1 bought 6,000 yen once (Regular now, Silver under SILVER_EASIER), c-2 nothing."""
    from django.utils import timezone

    from mercari_ops.common.business_time import business_month

    publish_rules(by="setup")
    one = Customer.objects.create(customer_id="c-1", stage=10, rules_stage=10)
    Customer.objects.create(customer_id="c-2", stage=10, rules_stage=10)
    MonthlyTotal.objects.create(customer=one, kind="buy", month=business_month(timezone.now()), amount=6000, count=1)


def test_marketer_alone_cannot_publish_and_sees_the_preview(client, people, customers):
    response = client.post(ADD, {"definition": json.dumps(SILVER_EASIER), "note": "easier Silver"})
    # then no new version, no recomputation: a change request with the stage moves
    assert response.status_code == 302
    assert list(StageRuleVersion.objects.values_list("version", flat=True)) == [1]
    assert RecomputeJob.objects.count() == 1
    change = ChangeRequest.objects.get(kind="stage_rules.publish")
    assert response["Location"] == f"/admin/common/changerequest/{change.pk}/change/"
    assert change.preview["moves"] == [{"from_stage": 10, "to_stage": 20, "customers": 1}]
    assert (change.preview["up"], change.preview["down"], change.preview["unchanged"]) == (1, 0, 1)
    page = client.get(response["Location"]).content.decode()
    assert "stages.1.thresholds.buy_amount" in page and "Approve and apply" not in page
    # the requester cannot approve
    with pytest.raises(ApprovalRefused):
        change_request_approve(request_id=change.pk, by=people["mika"])
    assert StageRuleVersion.objects.count() == 1


def test_an_approver_publishes_it_and_the_version_names_both(client, people, customers):
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER), "note": "easier Silver"})
    change = ChangeRequest.objects.get()
    change_request_approve(request_id=change.pk, by=people["anna"])
    version = StageRuleVersion.objects.get(version=2)
    assert version.created_by == "mika"
    assert version.note == f"easier Silver (change request #{change.pk}, approved by anna)"
    assert version.definition["stages"][1]["thresholds"] == {"buy_amount": 5000}
    assert RecomputeJob.objects.filter(rule_version=version).exists()
    assert AuditLogEntry.objects.filter(action="change_request.approve", actor="anna",
                                        target_type="loyalty.stageruleversion").exists()


def test_rejected_rules_publish_nothing(client, people, customers):
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER)})
    change_request_reject(request_id=ChangeRequest.objects.get().pk, by=people["anna"], note="not this month")
    assert StageRuleVersion.objects.count() == 1 and RecomputeJob.objects.count() == 1


def test_a_request_is_stale_once_another_version_was_published(client, people, customers):
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER)})
    publish_rules({**RULES, "window_months": 6}, by="someone")
    change = ChangeRequest.objects.get()
    with pytest.raises(ChangeRequestStale):
        change_request_approve(request_id=change.pk, by=people["anna"])
    change.refresh_from_db()
    assert change.status == "stale"
    assert StageRuleVersion.objects.order_by("-version").first().definition["window_months"] == 6


def test_saving_the_rules_unchanged_answers_a_message_not_a_500(client, people, customers):
    response = client.post(ADD, {"definition": json.dumps(RULES)}, follow=True)
    assert response.status_code == 200
    assert "same as the current version" in response.content.decode()
    assert not ChangeRequest.objects.exists() and StageRuleVersion.objects.count() == 1


def test_the_rules_history_links_the_proposals(client, people, customers):
    client.post(ADD, {"definition": json.dumps(SILVER_EASIER)})
    page = client.get("/admin/loyalty/stageruleversion/").content.decode()
    assert "Proposals waiting for an approver: 1." in page
    assert "/admin/common/changerequest/?kind=stage_rules.publish" in page
    listing = client.get("/admin/common/changerequest/?kind=stage_rules.publish").content.decode()
    assert f"/admin/common/changerequest/{ChangeRequest.objects.get().pk}/change/" in listing
