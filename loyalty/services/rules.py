"""Stage rules versions and the background recomputation they trigger.

Publishing a version stores the new definition with the one it replaced (before/after), who and
when, and a RecomputeJob row; the Celery task is enqueued after commit. The job walks all
customers in customer_id order in short batches, applying the new rules in both directions, and
stores its cursor and done/total after each batch: a crashed or lost job is resumed from its
cursor by the `loyalty.recompute_resume` periodic task. A newer version supersedes an older job.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from mercari_ops.common.enqueue import enqueue
from mercari_ops.common.errors import Conflict, ValidationFailed
from mercari_ops.common.locks import try_named_lock

from .. import selectors
from ..models import Customer, RecomputeJob, StageChange, StageRuleVersion
from ..rules import definition_validate, ruleset_build
from . import loyalty_sql
from .stages import customers_lock_batch, restage

logger = logging.getLogger(__name__)

RECOMPUTE_LOCK = "loyalty.recompute"
UNFINISHED = (RecomputeJob.Status.QUEUED, RecomputeJob.Status.RUNNING, RecomputeJob.Status.FAILED)


def rules_version_publish(*, definition, by: str, note: str = "") -> StageRuleVersion:
    """Validate and store a new rules version, then recompute every customer in the background."""
    cleaned = definition_validate(definition)
    selectors.rules_cache_clear()
    if not by:
        raise ValidationFailed("the author's name is required", "by")
    try:
        with transaction.atomic():
            latest = StageRuleVersion.objects.select_for_update().order_by("-version").first()
            if latest is not None and latest.definition == cleaned:
                raise ValidationFailed("these rules are the same as the current version", "definition")
            version = StageRuleVersion.objects.create(
                version=(latest.version + 1) if latest else 1, definition=cleaned,
                previous_definition=latest.definition if latest else None, note=note[:300], created_by=by,
            )
            RecomputeJob.objects.filter(status__in=UNFINISHED).update(
                status=RecomputeJob.Status.SUPERSEDED, finished_at=timezone.now()
            )
            job = RecomputeJob.objects.create(rule_version=version, total=Customer.objects.count())
            transaction.on_commit(lambda: _enqueue(job.pk))
    except IntegrityError:
        raise Conflict("another rules version was published at the same time; reload and retry", "version")
    return version


def _enqueue(job_id: int) -> None:
    from ..tasks import recompute

    enqueue(recompute, job_id)  # broker down: the row is durable, recompute_resume picks it up


def recompute_job_run(*, job_id: int, batch_size: int | None = None, now: datetime | None = None) -> str:
    """Run (or resume) one recomputation job to its end. Returns its final status."""
    batch_size = batch_size or settings.LOYALTY_RECOMPUTE_BATCH_SIZE
    with try_named_lock(RECOMPUTE_LOCK) as acquired:
        if not acquired:
            return "locked"
        try:
            writers_drain()
            return _recompute_loop(job_id, batch_size, now)
        except Exception as exc:
            logger.exception("recompute job %s failed", job_id)
            RecomputeJob.objects.filter(pk=job_id, status=RecomputeJob.Status.RUNNING).update(
                status=RecomputeJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                heartbeat_at=timezone.now(),
            )
            return RecomputeJob.Status.FAILED


def writers_drain() -> None:
    """Wait until every transaction writing customers has finished.

    The activity handler evaluates with the rules version of its statement's snapshot, taken before it
    locks the customers. A recomputation starts after its rules version committed; once the writers that
    were running then are done, no evaluation with older rules can commit after the recomputation passed
    a customer. SHARE mode conflicts with every writer's ROW EXCLUSIVE lock and is released at once.
    """
    with transaction.atomic():
        loyalty_sql.customer_writers_drain()


def _recompute_loop(job_id: int, batch_size: int, now: datetime | None) -> str:
    while True:
        with transaction.atomic():
            job = RecomputeJob.objects.select_for_update().select_related("rule_version").get(pk=job_id)
            if job.status in (RecomputeJob.Status.DONE, RecomputeJob.Status.SUPERSEDED):
                return job.status
            moment = now or timezone.now()
            latest = StageRuleVersion.objects.order_by("-version").values_list("version", flat=True).first()
            if latest != job.rule_version.version:
                job.status, job.finished_at = RecomputeJob.Status.SUPERSEDED, moment
                job.save(update_fields=["status", "finished_at"])
                return job.status
            if job.status != RecomputeJob.Status.RUNNING:
                job.status, job.error = RecomputeJob.Status.RUNNING, ""
                job.started_at = job.started_at or moment
            ruleset = ruleset_build(job.rule_version.version, job.rule_version.definition)
            states = customers_lock_batch(after=job.cursor, limit=batch_size)
            if states:
                job.changed += restage(states=states, ruleset=ruleset, now=moment, trigger="rules",
                                       allow_up=True, allow_down=True, up_cause=StageChange.Cause.RULES,
                                       down_cause=StageChange.Cause.RULES)
                job.done += len(states)
                job.total = max(job.total, job.done)
                job.cursor = states[-1].customer_id
            else:
                job.status, job.finished_at = RecomputeJob.Status.DONE, moment
                job.total = job.done
            job.heartbeat_at = moment
            job.save(update_fields=["status", "error", "started_at", "changed", "done", "total", "cursor",
                                    "heartbeat_at", "finished_at"])
            if job.status == RecomputeJob.Status.DONE:
                return job.status


def recompute_job_resume_stale(*, now: datetime | None = None, stale_after: timedelta = timedelta(minutes=2)) -> str:
    """Sweeper: run the newest unfinished job if nobody has touched it for `stale_after`."""
    now = now or timezone.now()
    job = RecomputeJob.objects.filter(status__in=UNFINISHED).order_by("-created_at", "-id").first()
    if job is None:
        return "idle"
    last_seen = job.heartbeat_at or job.created_at
    if last_seen > now - stale_after:
        return "fresh"
    return recompute_job_run(job_id=job.pk)
