"""Changes that move money go to the audit log: campaign drafts created and edited, "settle now", "retry",
"deliver now", closing the points breaker, merchant-master imports (in the request and by the worker)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile

from campaigns.models import Bill, Campaign, MerchantImportJob, PointsGrant
from campaigns.services import bills_settle, campaign_update, merchant_import_start
from campaigns.services.merchants import merchant_import_job_run
from campaigns.tests.factories import bill_event, line
from campaigns.tests.test_admin import ADD, _form
from mercari_ops.common.models import AuditLogEntry

pytestmark = pytest.mark.django_db


@pytest.fixture
def marketer(client, db):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("mika", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="marketers"))
    client.force_login(user)
    return client


def test_a_draft_created_in_the_admin_and_edited_later_is_audited(marketer):
    response = marketer.post(ADD, _form(), REMOTE_ADDR="10.5.5.5")
    assert response.status_code == 302, response.content.decode()[:2000]
    campaign = Campaign.objects.get()
    created = AuditLogEntry.objects.get(action="campaign.create", target_id=str(campaign.pk))
    assert (created.actor, created.actor_ip, created.before) == ("mika", "10.5.5.5", None)
    assert created.after["name"] == "Autumn" and created.after["status"] == "draft"
    # a later edit of the draft: before and after
    campaign_update(campaign_id=campaign.pk, by="mika", name="Autumn 2")
    edited = AuditLogEntry.objects.get(action="campaign.update", target_id=str(campaign.pk))
    assert (edited.before["name"], edited.after["name"], edited.actor) == ("Autumn", "Autumn 2", "mika")
    # saving with no change writes nothing
    campaign_update(campaign_id=campaign.pk, by="mika", name="Autumn 2")
    assert AuditLogEntry.objects.filter(action="campaign.update").count() == 1


def test_settle_now_and_deliver_now_are_audited(operator, campaigns, customer, record_bill):
    customer("c-1", stage=20)
    bill_pk = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    operator.post("/admin/campaigns/bill/", {"action": "settle_now", "_selected_action": [bill_pk]},
                  REMOTE_ADDR="10.6.6.6")
    settled = AuditLogEntry.objects.get(action="bill.settle_now")
    assert (settled.actor, settled.actor_ip, settled.target_id) == ("olga", "10.6.6.6", str(bill_pk))
    assert settled.before == {"statuses": {str(bill_pk): "pending"}}
    assert settled.after["statuses"] == {str(bill_pk): Bill.objects.get(pk=bill_pk).status} == {str(bill_pk): "settled"}
    assert settled.after["outcome"]["bills"] == 1

    grant = PointsGrant.objects.get()
    operator.post("/admin/campaigns/pointsgrant/", {"action": "deliver_now", "_selected_action": [grant.pk]})
    delivered = AuditLogEntry.objects.get(action="points_grant.deliver_now")
    assert delivered.before == {"statuses": {str(grant.pk): "pending"}}
    assert delivered.after["statuses"] == {str(grant.pk): "sent"} and delivered.after["outcome"]["sent"] == 1


def test_settle_now_of_an_already_settled_bill_still_names_who_tried(operator, campaigns, customer, record_bill):
    customer("c-1", stage=10)
    bill_pk = record_bill(bill_event("c-1", [line("p-1", 3000)]))
    bills_settle(bill_ids=[bill_pk])
    operator.post("/admin/campaigns/bill/", {"action": "settle_now", "_selected_action": [bill_pk]})
    entry = AuditLogEntry.objects.get(action="bill.settle_now")
    assert entry.before["statuses"] == entry.after["statuses"] == {str(bill_pk): "settled"}


HEADER = "merchant_id,payment_method,master_id,master_name,is_marketplace,category\n"


def test_a_merchant_csv_imported_in_the_request_is_audited(marketer):
    response = marketer.post("/admin/campaigns/merchantmaster/import-csv/",
                             {"file": SimpleUploadedFile("shops.csv", (HEADER + "m-1,,shop-1,Shop,yes,\n").encode())})
    assert response.status_code == 302
    entry = AuditLogEntry.objects.get(action="merchant_master.import")
    assert (entry.actor, entry.note, entry.target_type) == ("mika", "shops.csv", "campaigns.merchantmaster")
    assert entry.after["aliases_created"] == 1 and entry.after["masters_created"] == 1


def test_a_refused_merchant_csv_leaves_no_audit_entry(marketer):
    response = marketer.post("/admin/campaigns/merchantmaster/import-csv/",
                             {"file": SimpleUploadedFile("bad.csv", b"nonsense\n")})
    assert response.status_code == 200
    assert not AuditLogEntry.objects.filter(action="merchant_master.import").exists()


def test_a_merchant_csv_applied_by_the_worker_is_audited_as_its_uploader(db):
    rows = "".join(f"m-{n},,shop-{n},Shop {n},n,\n" for n in range(12))
    job = merchant_import_start(data=(HEADER + rows).encode(), file_name="big.csv", by="mika", inline_rows=10).job
    assert not AuditLogEntry.objects.filter(action="merchant_master.import").exists()  # only queued
    merchant_import_job_run(job_id=job.pk, progress=lambda done: None)
    assert MerchantImportJob.objects.get(pk=job.pk).status == "done"
    entry = AuditLogEntry.objects.get(action="merchant_master.import", target_id=str(job.pk))
    assert (entry.actor, entry.note, entry.after["rows"]) == ("mika", "big.csv", 12)


def test_a_rewards_csv_export_is_audited(operator, campaigns, customer, record_bill):
    from campaigns.models import CampaignReward

    customer("c-1", stage=20)
    bills_settle(bill_ids=[record_bill(bill_event("c-1", [line("p-1", 3000)]))])
    response = operator.post("/admin/campaigns/campaignreward/", {
        "action": "export_csv", "_selected_action": list(CampaignReward.objects.values_list("pk", flat=True))})
    assert response.status_code == 200 and b"p-1" in b"".join(response.streaming_content
                                                            if response.streaming else [response.content])
    entry = AuditLogEntry.objects.get(action="campaign_reward.export_csv")
    assert entry.actor == "olga" and entry.after["rows"] == 1


def test_running_a_failed_import_again_is_audited(marketer):
    rows = "".join(f"m-{n},,shop-{n},Shop {n},n,\n" for n in range(12))
    job = merchant_import_start(data=(HEADER + rows).encode(), file_name="big.csv", by="mika", inline_rows=10).job
    MerchantImportJob.objects.filter(pk=job.pk).update(status=MerchantImportJob.Status.FAILED)
    marketer.post("/admin/campaigns/merchantimportjob/", {"action": "run_again", "_selected_action": [job.pk]})
    assert MerchantImportJob.objects.get(pk=job.pk).status == "queued"
    entry = AuditLogEntry.objects.get(action="merchant_import_job.retry", target_id=str(job.pk))
    assert (entry.actor, entry.after) == ("mika", {"status": "queued"})
