"""Merchant master import (issue 16 point 8): a bad file stores nothing and names every problem, a big one
runs in the background with its progress in the admin, and the upsert is set-based."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from campaigns.catalog import generation_current
from campaigns.models import MerchantAlias, MerchantImportJob, MerchantMaster
from campaigns.services import merchant_import_start, merchant_master_import_csv
from campaigns.services.merchant_csv import MerchantCsvInvalid
from campaigns.services.merchants import (
    INLINE_ROWS,
    QUEUED_STALE,
    merchant_import_job_retry,
    merchant_import_job_run,
    merchant_import_jobs_requeue_stale,
)
from campaigns.services.merchants_sql import ProgressWriter
from campaigns.tasks_import import merchant_import_task
from mercari_ops.common.tests.brokers import celery_broker, closed_port_url, queued_tasks

IMPORT = "/admin/campaigns/merchantmaster/import-csv/"
HEADER = "merchant_id,payment_method,master_id,master_name,is_marketplace,category\n"


@pytest.fixture
def marketer(client, db):
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()
    user = get_user_model().objects.create_user("mika", password="pw-123456789", is_staff=True)
    user.groups.add(Group.objects.get(name="marketers"))
    client.force_login(user)
    return client


def _upload(marketer, text: str | bytes, name: str = "m.csv"):
    data = text.encode() if isinstance(text, str) else text
    return marketer.post(IMPORT, {"file": SimpleUploadedFile(name, data)})


def _big_file(rows: int) -> str:
    return HEADER + "".join(f"m-{n},,shop-{n},Shop {n},{'Y' if n % 2 else 'n'},\n" for n in range(rows))


def _refused(response, *where: str) -> str:
    page = response.content.decode()
    assert response.status_code == 200 and "nothing was stored" in page
    for text in where:
        assert text in page, text
    assert not MerchantMaster.objects.exists() and not MerchantAlias.objects.exists()
    return page


# --- the reproductions: each answered 500 (or stored the wrong thing) before -----------------------------


def test_a_merchant_id_over_64_characters_is_named_and_nothing_stored(marketer):
    response = _upload(marketer, HEADER + "m-ok,,shop-1,,,\n" + f"{'m' * 65},,shop-2,,,\n")
    _refused(response, "<td>3</td><td>merchant_id</td>", "is 65 characters long; at most 64 allowed")


def test_a_master_name_over_200_characters_is_named_and_nothing_stored(marketer):
    response = _upload(marketer, HEADER + f"m-1,,shop-1,{'n' * 201},,\n")
    _refused(response, "<td>2</td><td>master_name</td>", "is 201 characters long; at most 200 allowed")


def test_a_nul_byte_is_named_and_nothing_stored(marketer):
    response = _upload(marketer, HEADER.encode() + b"m-1,,shop-1,ok,,\nm-2,,shop-2,bad\x00name,,\n")
    _refused(response, "<td>3</td><td>master_name</td>", "contains a NUL character")


def test_a_field_over_131072_characters_is_named_and_nothing_stored(marketer):
    response = _upload(marketer, HEADER + "m-1,,shop-1,,,\n" + f"m-2,,shop-2,{'x' * 131_073},,\n")
    _refused(response, "<td>3</td><td></td>", "not readable as CSV")


def test_is_marketplace_y_is_stored_true_and_a_word_outside_the_list_is_refused(db):
    merchant_master_import_csv(text=HEADER + "m-1,,shop-1,,Y,\nm-2,,shop-2,,N,\n")
    assert dict(MerchantMaster.objects.values_list("master_id", "is_marketplace")) == {"shop-1": True,
                                                                                       "shop-2": False}
    with pytest.raises(MerchantCsvInvalid) as refused:
        merchant_master_import_csv(text=HEADER + "m-3,,shop-3,,si,\n")
    assert (refused.value.field, refused.value.problems[0].line) == ("is_marketplace", 2)
    assert not MerchantMaster.objects.filter(master_id="shop-3").exists()


def test_the_same_merchant_id_twice_names_both_lines_and_leaves_no_orphan_master(marketer):
    response = _upload(marketer, HEADER + "m-1,,shop-a,,,\nm-2,,shop-c,,,\nm-1,,shop-b,,,\n")
    _refused(response, "merchant_id &#x27;m-1&#x27; with payment_method &#x27;&#x27; is on line 2 and line 4")


def test_20000_rows_are_checked_in_the_request_and_imported_in_the_background_with_few_queries(
        marketer, django_capture_on_commit_callbacks, django_assert_max_num_queries):
    # when: a 20,000-row file is uploaded
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = _upload(marketer, _big_file(20_000), name="shops.csv")
    # then: nothing imported yet, a queued job, its task sent after commit, the admin on the job's page
    job = MerchantImportJob.objects.get()
    assert (response.status_code, response["Location"]) == (302, f"{IMPORT}{job.pk}/")
    assert (job.status, job.rows_total, job.rows_done, job.created_by, job.file_name) == (
        "queued", 20_000, 0, "mika", "shops.csv")
    assert len(callbacks) == 1 and not MerchantAlias.objects.exists()
    queued = marketer.get(f"{IMPORT}{job.pk}/").content.decode()
    assert "Queued" in queued and "0 / 20000 rows" in queued and 'http-equiv="refresh"' in queued
    generation = generation_current()
    # when: the worker runs it
    with django_assert_max_num_queries(80):
        outcome = merchant_import_task(job.pk)
    # then: every row in, set-based
    assert outcome == {"job": job.pk, "status": "done", "rows": 20_000}
    assert MerchantAlias.objects.count() == 20_000 and MerchantMaster.objects.count() == 20_000
    assert MerchantMaster.objects.get(master_id="shop-19999").is_marketplace is True
    assert MerchantMaster.objects.get(master_id="shop-0").is_marketplace is False
    assert generation_current() > generation
    job.refresh_from_db()
    assert (job.status, job.rows_done, job.csv_text) == ("done", 20_000, "")
    assert job.result == {"rows": 20_000, "masters_created": 20_000, "masters_updated": 0,
                          "aliases_created": 20_000, "aliases_updated": 0}
    done = marketer.get(f"{IMPORT}{job.pk}/").content.decode()
    assert "Done" in done and "20000 / 20000 rows" in done and 'http-equiv="refresh"' not in done
    assert "shops.csv" in marketer.get(IMPORT).content.decode()


# --- all or nothing, every problem, updates ------------------------------------------------------------


def test_every_problem_of_a_file_is_listed_and_capped(marketer):
    rows = "".join(f"m-{n},,,,,\n" for n in range(150))
    page = _refused(_upload(marketer, HEADER + "m-ok,,shop,,,\n" + rows), "150 problems in the file",
                    "The first 100 are listed.")
    assert page.count("is empty") == 100


def test_a_small_file_is_imported_in_the_request(marketer):
    response = _upload(marketer, HEADER + "m-1,,shop-1,Shop,yes,\nm-1,id,shop-1,,,\n")
    assert (response.status_code, response["Location"]) == (302, "/admin/campaigns/merchantmaster/")
    assert MerchantAlias.objects.count() == 2 and not MerchantImportJob.objects.exists()


def test_a_reimport_updates_masters_and_moves_aliases_keeping_what_the_file_leaves_empty(db):
    first = merchant_master_import_csv(text=HEADER + "m-1,,shop-a,Shop A,1,food\nm-2,id,shop-a,,,\n")
    assert first == {"rows": 2, "masters_created": 1, "masters_updated": 0, "aliases_created": 2,
                     "aliases_updated": 0}
    second = merchant_master_import_csv(text=HEADER + "m-2,id,shop-b,Shop B,,\nm-1,,shop-a,,0,\nm-3,,shop-a,,,\n")
    assert second == {"rows": 3, "masters_created": 1, "masters_updated": 1, "aliases_created": 1,
                      "aliases_updated": 2}
    shop_a = MerchantMaster.objects.get(master_id="shop-a")
    assert (shop_a.name, shop_a.is_marketplace, shop_a.category) == ("Shop A", False, "food")
    assert dict(MerchantAlias.objects.values_list("merchant_id", "master__master_id")) == {
        "m-1": "shop-a", "m-2": "shop-b", "m-3": "shop-a"}


def test_a_failure_while_applying_a_job_stores_nothing_and_the_job_can_run_again(db, eager_celery,
                                                                                  django_capture_on_commit_callbacks):
    job = merchant_import_start(data=_big_file(30).encode(), inline_rows=10).job

    def fail_after_first_batch(done):
        raise RuntimeError(f"worker lost after {done} rows")

    with pytest.raises(RuntimeError):
        merchant_import_job_run(job_id=job.pk, progress=fail_after_first_batch, batch=10)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "RuntimeError: worker lost after 10 rows")
    assert not MerchantMaster.objects.exists() and not MerchantAlias.objects.exists()
    # when: an operator runs it again
    with django_capture_on_commit_callbacks(execute=True):
        assert merchant_import_job_retry(job_id=job.pk) is True
    job.refresh_from_db()
    assert (job.status, job.rows_done, MerchantAlias.objects.count()) == ("done", 30, 30)
    assert merchant_import_job_retry(job_id=job.pk) is False


def test_a_job_is_run_once(db):
    job = merchant_import_start(data=_big_file(5), inline_rows=2).job
    assert merchant_import_job_run(job_id=job.pk).status == "done"
    generation = generation_current()
    assert merchant_import_job_run(job_id=job.pk).status == "done"
    assert generation_current() == generation


def test_a_job_whose_task_was_never_queued_is_sent_again_by_the_sweeper(db, eager_celery):
    job = merchant_import_start(data=_big_file(5), inline_rows=2).job  # on_commit never runs here: task lost
    now = timezone.now()
    assert merchant_import_jobs_requeue_stale(now=now) == 0
    assert merchant_import_jobs_requeue_stale(now=now + QUEUED_STALE + timedelta(seconds=1)) == 1
    job.refresh_from_db()
    assert (job.status, MerchantAlias.objects.count()) == ("done", 5)


def test_an_abandoned_running_job_is_taken_over(db):
    job = merchant_import_start(data=_big_file(5), inline_rows=2).job
    started = timezone.now()
    MerchantImportJob.objects.filter(pk=job.pk).update(status="running", started_at=started)
    assert merchant_import_job_run(job_id=job.pk, now=started + timedelta(minutes=1)).status == "running"
    assert merchant_import_job_run(job_id=job.pk, now=started + timedelta(minutes=16)).status == "done"


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_outside_the_import_transaction():
    job = MerchantImportJob.objects.create(csv_text=_big_file(25), rows_total=25)  # as the upload leaves it
    writer = ProgressWriter(job.pk)
    seen = []

    def progress(done):
        writer(done)
        # read on the import's own connection, inside its transaction: only a committed write shows here
        seen.append(MerchantImportJob.objects.get(pk=job.pk).rows_done)

    try:
        merchant_import_job_run(job_id=job.pk, progress=progress, batch=10)
    finally:
        writer.close()
    assert seen == [10, 20, 25]
    assert MerchantImportJob.objects.get(pk=job.pk).status == "done"


def test_a_big_upload_with_redis_down_is_accepted_and_the_sweeper_sends_it_later(marketer,
                                                                                 django_capture_on_commit_callbacks):
    # when: a big file is uploaded while the broker refuses connections
    with celery_broker(closed_port_url()), django_capture_on_commit_callbacks(execute=True):
        response = _upload(marketer, _big_file(INLINE_ROWS + 1))
    # then: the upload succeeds with a queued job (no task message could be sent)
    job = MerchantImportJob.objects.get()
    assert (response.status_code, job.status) == (302, "queued")
    # when: the broker is back and the job has waited long enough, the sweeper sends it and a worker runs it
    assert merchant_import_jobs_requeue_stale(now=job.queued_at + QUEUED_STALE + timedelta(seconds=1)) == 1
    assert queued_tasks()[0] == ("campaigns.merchant_import_run", f"({job.pk},)")
    merchant_import_task(job.pk)
    job.refresh_from_db()
    assert (job.status, MerchantAlias.objects.count()) == ("done", INLINE_ROWS + 1)


def test_workers_and_beat_know_the_import_tasks():
    from mercari_ops.celery import app
    from mercari_ops.common.periodic import PERIODIC_TASKS

    assert "campaigns.merchant_import_run" in app.tasks
    assert PERIODIC_TASKS["campaigns.merchant_import_sweep"].every == timedelta(seconds=60)
