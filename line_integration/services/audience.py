"""The audience job: linked LINE IDs (LineLinkageUsers) -> the LINE upload audience group.

Every run (every 3 minutes, under a lock): read the group's jobs, settle ours
(FINISHED -> added, FAILED or lost -> pending), then while fewer than 10 jobs are in
progress and the 60/min budget allows, add pending users in chunks of up to
10,000. LINE's "too many jobs" (429, or 409 in some deployments) puts the chunk
back for the next run. Groups are rotated before their 180-day expiry, and at once when LINE reports
one EXPIRED or refuses an add as expired anyway (docs/operations.md).
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from mercari_ops.common.ratelimit import rate_limiter

from ..clients import LineBadRequest, LineConflict, LineRateLimited, LineServerError, LineTimeout, line_client
from ..models import AudienceGroup, AudienceJob, LineLinkageUser

logger = logging.getLogger(__name__)
IN_PROGRESS = ("QUEUED", "WORKING")
LOST_AFTER = timedelta(seconds=60)  # a job LINE does not list this long after the add never started
LINE_EXPIRY = timedelta(days=180)


def linkage_user_add(*, line_id: str) -> None:
    """Linking inserts the LINE ID as `pending` (once; a re-link keeps its audience status)."""
    now = timezone.now()
    LineLinkageUser.objects.get_or_create(line_id=line_id, defaults={"created": now, "updated": now})


def _budget() -> bool:
    """One audience call from the global 60/min budget (shared by create, add and get)."""
    return rate_limiter().acquire("line:audience", limit=settings.LINE_AUDIENCE_RATE_PER_MINUTE, period=60.0) == 0.0


def audience_rotate() -> AudienceGroup:
    """Create a new upload audience group, retire the old ones, and re-add every linked user to it.

    The caller has taken one call from the audience budget.
    """
    now = timezone.now()
    created = line_client().audience_create(description=f"{settings.LINE_AUDIENCE_DESCRIPTION} "
                                                        f"{now:%Y-%m-%d %H%M}"[:120])
    expire = created.get("expireTimestamp")
    if expire and expire > 10**11:  # milliseconds
        expire = expire / 1000
    with transaction.atomic():
        AudienceGroup.objects.filter(active=True).update(active=False)
        group = AudienceGroup.objects.create(
            audience_group_id=created["audienceGroupId"], description=created.get("description", "")[:120],
            created_at=now, expires_at=(datetime.fromtimestamp(expire, tz=UTC) if expire
                                        else now + LINE_EXPIRY))
        AudienceJob.objects.filter(status=AudienceJob.Status.IN_PROGRESS).update(status=AudienceJob.Status.FAILED,
                                                                                  finished_at=now)
        LineLinkageUser.objects.exclude(line_audience_status=LineLinkageUser.AudienceStatus.PENDING).update(
            line_audience_status=LineLinkageUser.AudienceStatus.PENDING, job=None, updated=now)
    logger.info("audience group rotated to %s", group.audience_group_id)
    return group


def _settle(group: AudienceGroup, line_jobs: list[dict]) -> int:
    """Apply LINE's job states to ours; returns how many jobs are in progress."""
    now = timezone.now()
    by_description = {job.get("description"): job for job in line_jobs}
    in_progress = sum(1 for job in line_jobs if job.get("jobStatus") in IN_PROGRESS)
    ours_in_progress = 0
    for job in AudienceJob.objects.filter(audience_group=group, status=AudienceJob.Status.IN_PROGRESS):
        line_job = by_description.get(job.description)
        status = line_job.get("jobStatus") if line_job else None
        if status in IN_PROGRESS or (status is None and now - job.created_at < LOST_AFTER):
            ours_in_progress += 1
            continue
        with transaction.atomic():
            if status == "FINISHED":
                job.status = AudienceJob.Status.FINISHED
                job.users.update(line_audience_status=LineLinkageUser.AudienceStatus.ADDED, updated=now)
            else:  # FAILED, or never created (the add timed out before LINE took it): try again
                job.status = AudienceJob.Status.FAILED
                job.users.update(line_audience_status=LineLinkageUser.AudienceStatus.PENDING, job=None, updated=now)
            job.line_job_id = (line_job or {}).get("audienceGroupJobId")
            job.finished_at = now
            job.save(update_fields=["status", "line_job_id", "finished_at"])
    return max(in_progress, ours_in_progress)


def _claim_chunk(group: AudienceGroup) -> tuple[AudienceJob | None, list[str]]:
    now = timezone.now()
    with transaction.atomic():
        rows = list(LineLinkageUser.objects.select_for_update(skip_locked=True)
                    .filter(line_audience_status=LineLinkageUser.AudienceStatus.PENDING)
                    .order_by("id").values_list("id", "line_id")[:settings.LINE_AUDIENCE_CHUNK_SIZE])
        if not rows:
            return None, []
        job = AudienceJob.objects.create(audience_group=group, description=f"mops-{uuid.uuid4().hex}",
                                         user_count=len(rows), created_at=now)
        LineLinkageUser.objects.filter(id__in=[r[0] for r in rows]).update(
            line_audience_status=LineLinkageUser.AudienceStatus.ADDING, job=job, updated=now)
    return job, [r[1] for r in rows]


def _release(job: AudienceJob) -> None:
    with transaction.atomic():
        job.users.update(line_audience_status=LineLinkageUser.AudienceStatus.PENDING, job=None,
                         updated=timezone.now())
        job.delete()


def _rotate_expired(group: AudienceGroup, summary: dict) -> AudienceGroup | None:
    """LINE says the group expired: retire it and rotate at once if the budget allows (else the next run)."""
    AudienceGroup.objects.filter(pk=group.pk).update(active=False)
    logger.warning("audience group %s expired at LINE before its rotation", group.audience_group_id)
    if not _budget():
        return None
    new = audience_rotate()
    summary["rotated_to"] = new.audience_group_id
    return new


def audience_sync() -> dict:
    """One run of the audience job (the periodic task calls it under its lock)."""
    summary = {"jobs_started": 0, "users_sent": 0, "stopped": ""}
    now = timezone.now()
    group = AudienceGroup.objects.filter(active=True).order_by("-created_at").first()
    rotate_at = timedelta(days=180 - settings.LINE_AUDIENCE_ROTATE_DAYS)
    if group is None or group.expires_at - now < rotate_at:
        if not LineLinkageUser.objects.exists():
            return dict(summary, stopped="no linked users yet")
        if not _budget():
            return dict(summary, stopped="audience budget used up")
        group = audience_rotate()
        summary["rotated_to"] = group.audience_group_id
    if not _budget():
        return dict(summary, stopped="audience budget used up")
    try:
        data = line_client().audience_get(audience_group_id=group.audience_group_id)
    except (LineRateLimited, LineServerError, LineTimeout) as exc:
        return dict(summary, stopped=f"audience get failed: {exc}")
    except LineBadRequest as exc:
        return dict(summary, stopped=f"audience get refused: {exc.reason}")
    if (data.get("audienceGroup") or {}).get("status") == "EXPIRED":
        group = _rotate_expired(group, summary)
        if group is None:
            return dict(summary, stopped="audience group expired; the next run rotates")
        data = {"jobs": []}  # a new group has no jobs yet
    in_progress = _settle(group, data.get("jobs") or [])
    summary["in_progress"] = in_progress
    while in_progress < settings.LINE_AUDIENCE_MAX_JOBS:
        if not LineLinkageUser.objects.filter(line_audience_status=LineLinkageUser.AudienceStatus.PENDING).exists():
            summary["stopped"] = "nothing pending"
            break
        if not _budget():
            summary["stopped"] = "audience budget used up"
            break
        job, line_ids = _claim_chunk(group)
        if job is None:
            summary["stopped"] = "nothing pending"
            break
        try:
            line_client().audience_add(audience_group_id=group.audience_group_id, audiences=line_ids,
                                       upload_description=job.description)
        except (LineRateLimited, LineConflict) as exc:  # too many jobs (or the rate): busy, next run
            _release(job)
            summary["stopped"] = f"busy: {exc.status}"
            break
        except (LineTimeout, LineServerError) as exc:
            # LINE may have taken it: keep the job; the next run finds it by description or releases it.
            summary["stopped"] = f"uncertain add: {exc}"
            break
        except LineBadRequest as exc:
            _release(job)
            if "EXPIRED" in exc.reason and "rotated_to" not in summary:  # expired since our get: rotate, go on
                group = _rotate_expired(group, summary)
                if group is not None:
                    in_progress = 0
                    continue
            summary["stopped"] = f"refused: {exc.reason}"
            break
        in_progress += 1
        summary["jobs_started"] += 1
        summary["users_sent"] += len(line_ids)
    summary["in_progress"] = in_progress
    return summary
