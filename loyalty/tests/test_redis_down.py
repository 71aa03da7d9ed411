"""Rules published while Redis is down (issue 16 point 7): the publish succeeds, and the recompute job whose
task was never sent is run by the `loyalty.recompute_resume` sweeper."""

import logging
from datetime import timedelta

import pytest

from loyalty import services
from loyalty.models import Customer, RecomputeJob
from loyalty.tests.factories import event, publish_rules
from mercari_ops.common.tests.brokers import celery_broker, closed_port_url

pytestmark = pytest.mark.django_db


def test_rules_published_with_redis_down_are_recomputed_by_the_resume_sweeper(django_capture_on_commit_callbacks,
                                                                              caplog):
    services.activity_apply(events=[event(customer_id=f"c-{i}", amount=100) for i in range(3)])
    with celery_broker(closed_port_url()), caplog.at_level(logging.WARNING, "mercari_ops.common.enqueue"):
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            version = publish_rules()
    assert len(callbacks) == 1  # the enqueue ran after commit and gave up without raising
    assert "could not enqueue loyalty.recompute" in caplog.text
    job = RecomputeJob.objects.get(rule_version=version)
    assert job.status == "queued"
    assert services.recompute_job_resume_stale(now=job.created_at + timedelta(minutes=1)) == "fresh"
    assert services.recompute_job_resume_stale(now=job.created_at + timedelta(minutes=3)) == "done"
    job.refresh_from_db()
    assert (job.status, job.done, job.total) == ("done", 3, Customer.objects.count())


def test_the_admin_resume_action_with_redis_down_warns_and_leaves_the_job_to_the_sweeper(admin_client):
    services.activity_apply(events=[event(customer_id="c-1", amount=100)])
    version = publish_rules()
    job = RecomputeJob.objects.get(rule_version=version)

    with celery_broker(closed_port_url()):
        response = admin_client.post("/admin/loyalty/recomputejob/", {"action": "resume",
                                                                       "_selected_action": [job.pk]}, follow=True)

    assert response.status_code == 200
    assert "Queued 0 of 1 job(s)" in response.content.decode()
