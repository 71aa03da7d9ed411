"""Backtest in the background: the worker's task computes what the in-request run did, with progress on the row."""

import pytest

from campaigns.models import CampaignBacktest, CampaignReward
from campaigns.services import campaign_backtest_compute, campaign_backtest_queue, campaign_backtest_run
from campaigns.tasks import campaign_backtest_task
from campaigns.tests.conftest import BACKTEST_DRAFT_RESULT
from mercari_ops.common.errors import ValidationFailed

pytestmark = pytest.mark.django_db


def test_task_computes_the_same_result_as_the_in_request_run(backtest_draft, django_capture_on_commit_callbacks):
    # given: a queued run (its task is sent after commit)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = campaign_backtest_queue(campaign_id=backtest_draft.pk, month="2026-10", by="mika")
    assert len(callbacks) == 1
    assert (run.status, run.lines_done, run.lines_total, run.result) == ("queued", 0, None, {})
    # when: the worker runs the task body
    answer = campaign_backtest_task(run.pk)
    # then
    run.refresh_from_db()
    assert answer == {"backtest": run.pk, "status": "done", "lines": 4}
    assert run.result == BACKTEST_DRAFT_RESULT
    assert (run.status, run.lines_done, run.lines_total, run.progress_percent) == ("done", 4, 4, 100)
    assert run.started_at <= run.finished_at and run.run_by == "mika"
    backtest_draft.refresh_from_db()
    assert backtest_draft.status == "draft"
    assert not CampaignReward.objects.exists()  # nothing granted


def test_progress_is_reported_after_each_batch_of_bills(backtest_draft):
    seen: list[int] = []
    result = campaign_backtest_compute(campaign_id=backtest_draft.pk, month="2026-10", batch=1, progress=seen.append)
    assert seen == [2, 4]  # two bills of two lines each, one bill per batch
    assert result == BACKTEST_DRAFT_RESULT  # the batch size does not change the result


def test_a_finished_run_is_not_run_again(backtest_draft):
    run = campaign_backtest_queue(campaign_id=backtest_draft.pk, month="2026-10")
    first = campaign_backtest_run(backtest_id=run.pk)
    CampaignBacktest.objects.filter(pk=run.pk).update(result={"kept": True})
    again = campaign_backtest_run(backtest_id=run.pk)  # a redelivered message
    assert (again.status, again.result, again.finished_at) == ("done", {"kept": True}, first.finished_at)


def test_a_redelivered_running_run_starts_over_and_finishes(backtest_draft):
    run = campaign_backtest_queue(campaign_id=backtest_draft.pk, month="2026-10")
    CampaignBacktest.objects.filter(pk=run.pk).update(status="running", lines_done=2, lines_total=4)  # worker lost
    done = campaign_backtest_run(backtest_id=run.pk)
    assert (done.status, done.lines_done, done.result) == ("done", 4, BACKTEST_DRAFT_RESULT)


def test_a_run_that_breaks_is_marked_failed_with_the_reason(backtest_draft):
    run = CampaignBacktest.objects.create(campaign=backtest_draft, month="2026-13")  # not a month
    with pytest.raises(ValueError):
        campaign_backtest_task(run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.error.startswith("ValueError:")
    assert run.finished_at is not None and run.result == {}


def test_month_must_be_valid_to_queue(backtest_draft):
    with pytest.raises(ValidationFailed) as caught:
        campaign_backtest_queue(campaign_id=backtest_draft.pk, month="2026-13")
    assert caught.value.field == "month"
    assert not CampaignBacktest.objects.exists()


def test_task_is_thin_acks_late_and_runs_on_the_default_queue():
    from mercari_ops.celery import app

    assert campaign_backtest_task.acks_late is True
    assert app.amqp.router.route({}, campaign_backtest_task.name)["queue"].name == "default"
