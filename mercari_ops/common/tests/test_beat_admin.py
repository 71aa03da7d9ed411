"""Periodic tasks in the admin: our declarations' descriptions, last and next run in Japan time."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Group, User
from django_celery_beat.models import PeriodicTask

from mercari_ops.common.beat_admin import business_time_label, periodic_task_next_run
from mercari_ops.common.periodic import periodic_tasks_sync

pytestmark = pytest.mark.django_db
TASKS = "/admin/django_celery_beat/periodictask/"


@pytest.fixture
def operator(client):
    periodic_tasks_sync()
    user = User.objects.create_user("beat-op", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client


def test_the_list_shows_what_each_task_does_and_its_runs_in_japan_time(operator):
    # given: inbox.process_due last ran at 12:00:05 UTC (21:00:05 in Tokyo), every 10 s
    task = PeriodicTask.objects.get(name="inbox.process_due")
    task.last_run_at = datetime(2026, 12, 5, 12, 0, 5, tzinfo=UTC)
    task.save()
    PeriodicTask.objects.filter(name="inbox.sweep_waiting").update(enabled=False)
    # when
    page = operator.get(TASKS).content.decode()
    # then
    assert "Retry inbox events whose backoff has passed." in page  # the task's docstring
    assert "2026-12-05 21:00:05 JST" in page
    assert "paused" in page
    detail = operator.get(f"{TASKS}{task.pk}/change/").content.decode()
    assert "Retry inbox events whose backoff has passed." in detail and "2026-12-05 21:00:05 JST" in detail


def test_next_run_of_an_interval_and_of_a_nightly_crontab():
    periodic_tasks_sync()
    now = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    every_10s = PeriodicTask.objects.get(name="inbox.process_due")
    every_10s.last_run_at = now - timedelta(seconds=4)
    assert periodic_task_next_run(every_10s, now=now) == now + timedelta(seconds=6)
    # inbox.retention: 03:17 Japan time, i.e. 18:17 UTC the day before
    nightly = PeriodicTask.objects.get(name="inbox.retention")
    nightly.last_run_at = datetime(2026, 12, 4, 18, 17, tzinfo=UTC)
    next_run = periodic_task_next_run(nightly, now=now)
    assert business_time_label(next_run) == "2026-12-06 03:17:00 JST"
    nightly.enabled = False
    assert periodic_task_next_run(nightly, now=now) is None
