"""The 3-minute audience job: <= 10 jobs in progress, <= 60 calls a minute (from the sandbox's records)."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from line_integration.models import AudienceGroup, AudienceJob, LineLinkageUser
from line_integration.services import audience_sync, linkage_user_add

pytestmark = pytest.mark.django_db


def linkages(n: int) -> None:
    now = timezone.now()
    LineLinkageUser.objects.bulk_create([LineLinkageUser(line_id=f"U{i:032x}", created=now, updated=now)
                                         for i in range(n)])


def statuses() -> dict:
    return {s: LineLinkageUser.objects.filter(line_audience_status=s).count() for s in ("pending", "adding", "added")}


def jobs_finish(sandbox) -> None:
    """Move the sandbox's clock past the time LINE takes for an audience job (the fixture's 1 s)."""
    sandbox.sandbox.clock.advance(1.1)


def run_until_added(sandbox, runs: int) -> list[dict]:
    results = []
    for _ in range(runs):
        results.append(audience_sync())
        if statuses()["added"] == LineLinkageUser.objects.count():
            break
        jobs_finish(sandbox)
    return results


def assert_line_limits_held(sandbox, per_minute: int = 60) -> None:
    state = sandbox.control("audience")
    assert state["max_jobs_in_progress"] <= 10 and state["jobs_refused"] == 0
    assert state["max_calls_per_minute"] <= per_minute
    counts = sandbox.control("stats")["status_counts"]
    assert not any("429" in counts.get(name, {}) for name in ("audience_create", "audience_add", "audience_get"))


def test_linking_inserts_a_pending_row_once():
    linkage_user_add(line_id="U" + "1" * 32)
    linkage_user_add(line_id="U" + "1" * 32)
    assert list(LineLinkageUser.objects.values_list("line_audience_status", flat=True)) == ["pending"]


def test_a_burst_is_added_with_at_most_10_jobs_in_progress_and_60_calls_a_minute(line_sandbox, settings):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 100
    linkages(2500)  # 25 chunks: more than 10 jobs' worth, so runs must wait for LINE to finish some
    results = run_until_added(line_sandbox, runs=8)
    assert statuses() == {"pending": 0, "adding": 0, "added": 2500}
    assert results[0]["jobs_started"] == 10 and results[0]["stopped"] == ""
    assert line_sandbox.control("audience")["groups"][0]["members"] == 2500
    assert_line_limits_held(line_sandbox)
    assert set(AudienceJob.objects.values_list("status", flat=True)) == {"finished"}


def test_the_per_minute_budget_stops_a_run_and_the_next_run_continues(line_sandbox, settings):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 10
    settings.LINE_AUDIENCE_RATE_PER_MINUTE = 8
    line_sandbox.control("limits", {name: [8, 60.0] for name in ("audience_create", "audience_add", "audience_get")})
    linkages(200)
    first = audience_sync()
    assert first["stopped"] == "audience budget used up" and first["jobs_started"] == 6  # create + get + 6 adds
    assert audience_sync()["stopped"] == "audience budget used up"
    assert statuses()["pending"] == 140
    state = line_sandbox.control("audience")
    assert state["max_calls_per_minute"] <= 8


@pytest.mark.parametrize("busy_status", [429, 409])
def test_too_many_jobs_answer_puts_the_chunk_back(line_sandbox, settings, busy_status):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 10
    linkages(30)
    audience_sync()  # creates the group and adds all three chunks
    LineLinkageUser.objects.update(line_audience_status="pending", job=None)
    AudienceJob.objects.all().delete()
    line_sandbox.control("faults", {"endpoints": ["audience_add"], "next": [busy_status]})
    result = audience_sync()
    assert result["stopped"] == f"busy: {busy_status}" and result["jobs_started"] == 0
    assert statuses()["pending"] == 30 and not AudienceJob.objects.exists()


def test_failed_job_puts_users_back_to_pending(line_sandbox, settings):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 10
    linkages(10)
    line_sandbox.control("audience", {"fail_rate": 1.0})
    audience_sync()
    jobs_finish(line_sandbox)
    line_sandbox.control("audience", {"fail_rate": 0.0})
    audience_sync()  # settles the FAILED job, then adds the users again in a new job
    assert AudienceJob.objects.filter(status="failed").count() == 1
    jobs_finish(line_sandbox)
    audience_sync()
    assert statuses()["added"] == 10


def test_add_that_timed_out_is_settled_from_lines_job_list(line_sandbox, settings):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 10
    settings.LINE_AUDIENCE_READ_TIMEOUT = 0.3
    linkages(10)
    line_sandbox.control("faults", {"endpoints": ["audience_add"], "next": ["timeout+"], "timeout_seconds": 0.6})
    result = audience_sync()
    assert result["stopped"].startswith("uncertain add") and statuses()["adding"] == 10
    jobs_finish(line_sandbox)
    audience_sync()
    assert statuses()["added"] == 10
    assert line_sandbox.control("stats")["status_counts"]["audience_add"] == {"500": 1}  # LINE took it once


def test_group_nearing_expiry_is_rotated_and_everyone_re_added(line_sandbox, settings):
    settings.LINE_AUDIENCE_CHUNK_SIZE = 100
    linkages(50)
    run_until_added(line_sandbox, runs=3)
    old = AudienceGroup.objects.get()
    AudienceGroup.objects.update(expires_at=timezone.now() + timedelta(days=9))
    result = audience_sync()
    new = AudienceGroup.objects.get(active=True)
    assert result["rotated_to"] == new.audience_group_id != old.audience_group_id
    assert statuses()["adding"] == 50
    jobs_finish(line_sandbox)
    audience_sync()
    assert statuses()["added"] == 50
    groups = {g["audienceGroupId"]: g["members"] for g in line_sandbox.control("audience")["groups"]}
    assert groups[new.audience_group_id] == 50


def added_then_expired(line_sandbox, settings, count: int) -> AudienceGroup:
    """`count` linkages added to one group, which LINE then reports EXPIRED; returns that group."""
    settings.LINE_AUDIENCE_CHUNK_SIZE = 100
    linkages(count)
    run_until_added(line_sandbox, runs=3)
    old = AudienceGroup.objects.get()
    line_sandbox.control("audience", {"expire_in": {str(old.audience_group_id): 0}})
    return old


def test_group_line_reports_expired_is_rotated_at_once_and_everyone_re_added(line_sandbox, settings):
    # given: everyone added to a group that LINE now reports EXPIRED (earlier than we expected it)
    old = added_then_expired(line_sandbox, settings, 50)
    # when
    result = audience_sync()
    # then: a new group in the same run, everyone re-added to it
    new = AudienceGroup.objects.get(active=True)
    assert result["rotated_to"] == new.audience_group_id != old.audience_group_id
    assert not AudienceGroup.objects.get(pk=old.pk).active
    assert result["jobs_started"] == 1 and statuses()["adding"] == 50
    jobs_finish(line_sandbox)
    audience_sync()
    assert statuses()["added"] == 50
    groups = {g["audienceGroupId"]: g["members"] for g in line_sandbox.control("audience")["groups"]}
    assert groups == {old.audience_group_id: 50, new.audience_group_id: 50}
    assert line_sandbox.control("stats")["status_counts"]["audience_add"] == {"202": 2}


def test_add_refused_as_expired_rotates_and_re_adds_everyone(line_sandbox, settings):
    # given: 50 users added, 10 more pending, and the group expires between the job's get and its add
    settings.LINE_AUDIENCE_CHUNK_SIZE = 100
    linkages(50)
    run_until_added(line_sandbox, runs=3)
    now = timezone.now()
    LineLinkageUser.objects.bulk_create([LineLinkageUser(line_id=f"U{i:032x}", created=now, updated=now)
                                         for i in range(50, 60)])
    old = AudienceGroup.objects.get()
    line_sandbox.control("audience", {"expire_on_add": [old.audience_group_id]})
    # when
    result = audience_sync()
    # then: LINE refused the add as expired; the job rotated and added all 60 to the new group
    new = AudienceGroup.objects.get(active=True)
    assert result["rotated_to"] == new.audience_group_id != old.audience_group_id
    assert result["jobs_started"] == 1 and result["users_sent"] == 60
    assert line_sandbox.control("stats")["status_counts"]["audience_add"] == {"202": 2, "400": 1}  # 1st, refused, new
    jobs_finish(line_sandbox)
    audience_sync()
    assert statuses() == {"pending": 0, "adding": 0, "added": 60}
    groups = {g["audienceGroupId"]: g["members"] for g in line_sandbox.control("audience")["groups"]}
    assert groups == {old.audience_group_id: 50, new.audience_group_id: 60}
    assert_line_limits_held(line_sandbox)


def test_expired_group_waits_for_the_next_run_when_the_budget_is_spent(line_sandbox, settings):
    added_then_expired(line_sandbox, settings, 10)
    settings.LINE_AUDIENCE_RATE_PER_MINUTE = line_sandbox.control("audience")["max_calls_per_minute"] + 1
    assert audience_sync()["stopped"] == "audience group expired; the next run rotates"
    assert not AudienceGroup.objects.filter(active=True).exists()
    settings.LINE_AUDIENCE_RATE_PER_MINUTE = 60
    assert audience_sync()["rotated_to"] == AudienceGroup.objects.get(active=True).audience_group_id


@pytest.mark.django_db(transaction=True)
def test_periodic_task_runs_every_3_minutes_and_never_overlaps(line_sandbox):
    from django.db import connection

    from line_integration.tasks import line_audience_sync
    from mercari_ops.common.locks import try_named_lock
    from mercari_ops.common.periodic import PERIODIC_TASKS

    assert PERIODIC_TASKS["line.audience_sync"].crontab == {"minute": "*/3"}
    held, release = threading.Event(), threading.Event()

    def other_run():
        with try_named_lock("periodic:line.audience_sync") as acquired:
            assert acquired
            held.set()
            release.wait(10)
        connection.close()

    thread = threading.Thread(target=other_run)
    thread.start()
    held.wait(10)
    try:
        assert line_audience_sync.run() == {"skipped": "locked"}
    finally:
        release.set()
        thread.join()
    assert line_audience_sync.run()["stopped"] == "no linked users yet"
