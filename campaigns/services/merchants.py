"""Merchant master import: a checked CSV (merchant_csv.py) upserted set-based, all or nothing.

A file with any problem stores nothing and names every problem (first PROBLEMS_KEPT shown). A valid file
of up to INLINE_ROWS rows is applied in the request; a bigger one becomes a MerchantImportJob that a
worker applies (`campaigns.merchant_import_run`) while the admin shows its progress. Either way the
rows go in with a few statements per batch (INSERT ... ON CONFLICT DO UPDATE), in one transaction, and
the catalog generation moves once.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mercari_ops.common.audit import audit_record
from mercari_ops.common.enqueue import enqueue, enqueue_after_commit

from ..catalog import catalog_changed
from ..models import MerchantAlias, MerchantImportJob, MerchantMaster
from ..tasks_import import merchant_import_task
from .merchant_csv import MerchantCsvInvalid, MerchantRow, merchant_csv_parse
from .merchants_sql import ProgressWriter

logger = logging.getLogger(__name__)

INLINE_ROWS = 2000
BATCH_ROWS = 2000
# A queued job whose task never arrived (broker down) is sent again after this; a running job whose
# worker vanished is taken over after RUNNING_STALE (its transaction was rolled back with the worker).
QUEUED_STALE = timedelta(minutes=2)
RUNNING_STALE = timedelta(minutes=15)


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


@transaction.atomic
def merchant_rows_apply(*, rows: Sequence[MerchantRow], batch: int = BATCH_ROWS,
                        progress: Callable[[int], object] | None = None) -> dict:
    """Upsert the masters, then the aliases, `batch` rows per statement; `progress(rows_done)` after each
    batch of aliases. Masters keep the fields a file leaves empty."""
    given: dict[str, dict] = {}
    for row in rows:
        fields = given.setdefault(row.master_id, {})
        for name, value in (("name", row.name), ("is_marketplace", row.is_marketplace), ("category", row.category)):
            if value is not None:
                fields[name] = value
    master_pks: dict[str, int] = {}
    masters_created = 0
    for master_ids in _batches(list(given), batch):
        existing = set(MerchantMaster.objects.filter(master_id__in=master_ids).values_list("master_id", flat=True))
        masters_created += len(master_ids) - len(existing)
        by_fields: dict[tuple[str, ...], list[MerchantMaster]] = defaultdict(list)
        for master_id in master_ids:
            fields = given[master_id]
            by_fields[tuple(sorted(fields))].append(MerchantMaster(master_id=master_id, **fields))
        for fields, masters in by_fields.items():
            if fields:
                MerchantMaster.objects.bulk_create(masters, update_conflicts=True, unique_fields=["master_id"],
                                                   update_fields=list(fields))
            else:
                MerchantMaster.objects.bulk_create(masters, ignore_conflicts=True)
        master_pks.update(MerchantMaster.objects.filter(master_id__in=master_ids).values_list("master_id", "pk"))
    aliases_created = aliases_updated = done = 0
    for chunk in _batches(rows, batch):
        existing = set(MerchantAlias.objects.filter(merchant_id__in={row.merchant_id for row in chunk})
                       .values_list("merchant_id", "payment_method"))
        updated = sum((row.merchant_id, row.payment_method) in existing for row in chunk)
        aliases_updated += updated
        aliases_created += len(chunk) - updated
        MerchantAlias.objects.bulk_create(
            [MerchantAlias(master_id=master_pks[row.master_id], merchant_id=row.merchant_id,
                           payment_method=row.payment_method) for row in chunk],
            update_conflicts=True, unique_fields=["merchant_id", "payment_method"], update_fields=["master"])
        done += len(chunk)
        if progress is not None:
            progress(done)
    catalog_changed()
    return {"rows": len(rows), "masters_created": masters_created, "masters_updated": len(given) - masters_created,
            "aliases_created": aliases_created, "aliases_updated": aliases_updated}


def _import_audit(*, counts: dict, job: MerchantImportJob | None = None, file_name: str = "", by: str = "",
                  request=None) -> None:
    """The merchant master decides which payments earn points: every applied file goes to the audit log."""
    audit_record(action="merchant_master.import", target=job, target_type="" if job else "campaigns.merchantmaster",
                 after=counts, request=request, actor=None if request else (by or None), note=file_name[:200])


def merchant_master_import_csv(*, text: str | bytes, by: str = "") -> dict:
    """Check the whole file, then upsert it in this transaction; raises MerchantCsvInvalid (a
    ValidationFailed naming the first problem, carrying the first PROBLEMS_KEPT) with nothing stored."""
    parsed = merchant_csv_parse(text)
    if not parsed.valid:
        raise MerchantCsvInvalid(parsed)
    with transaction.atomic():
        counts = merchant_rows_apply(rows=parsed.rows)
        _import_audit(counts=counts, by=by)
    return counts


@dataclass(frozen=True)
class ImportStarted:
    """What became of a valid upload: applied now (`counts`) or queued (`job`)."""

    counts: dict | None = None
    job: MerchantImportJob | None = None


@transaction.atomic
def merchant_import_start(*, data: bytes | str, file_name: str = "", by: str = "",
                          inline_rows: int = INLINE_ROWS, request=None) -> ImportStarted:
    """The admin's upload: a small file is applied at once, a big one queued as a job after it was checked
    (a file with problems raises MerchantCsvInvalid and queues nothing)."""
    parsed = merchant_csv_parse(data)
    if not parsed.valid:
        raise MerchantCsvInvalid(parsed)
    if len(parsed.rows) <= inline_rows:
        counts = merchant_rows_apply(rows=parsed.rows)
        _import_audit(counts=counts, file_name=file_name, by=by, request=request)
        return ImportStarted(counts=counts)
    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    job = MerchantImportJob.objects.create(file_name=file_name[:255], csv_text=text, rows_total=len(parsed.rows),
                                           created_by=by[:150])
    enqueue_after_commit(merchant_import_task, job.pk)  # broker down: the sweeper sends it
    return ImportStarted(job=job)


def merchant_import_job_run(*, job_id: int, progress: Callable[[int], object] | None = None,
                            now: datetime | None = None, batch: int = BATCH_ROWS) -> MerchantImportJob:
    """The worker's part. Claims the job (queued, or running but abandoned), checks the file again and applies
    it in one transaction; progress goes to the row on a connection of its own (merchants_sql.ProgressWriter)
    unless `progress` is given. A job someone else runs, or a finished one, is left as it is."""
    now = now or timezone.now()
    jobs = MerchantImportJob.objects.filter(pk=job_id)
    claimable = Q(status=MerchantImportJob.Status.QUEUED) | Q(status=MerchantImportJob.Status.RUNNING,
                                                              started_at__lt=now - RUNNING_STALE)
    if not jobs.filter(claimable).update(status=MerchantImportJob.Status.RUNNING, started_at=now, rows_done=0,
                                         error=""):
        return MerchantImportJob.objects.get(pk=job_id)
    job = MerchantImportJob.objects.get(pk=job_id)
    parsed = merchant_csv_parse(job.csv_text)
    if not parsed.valid:  # checked before it was queued: only a changed rule gets here
        jobs.update(status=MerchantImportJob.Status.FAILED, finished_at=timezone.now(),
                    problems=[p.as_dict() for p in parsed.problems], error=str(MerchantCsvInvalid(parsed))[:2000])
        return MerchantImportJob.objects.get(pk=job_id)
    writer = None
    if progress is None:
        progress = writer = ProgressWriter(job_id)
    try:
        with transaction.atomic():
            counts = merchant_rows_apply(rows=parsed.rows, progress=progress, batch=batch)
            jobs.update(status=MerchantImportJob.Status.DONE, result=counts, rows_done=len(parsed.rows),
                        rows_total=len(parsed.rows), csv_text="", finished_at=timezone.now())
            _import_audit(counts=counts, job=job, file_name=job.file_name, by=job.created_by)  # who uploaded it
    except Exception as exc:
        jobs.update(status=MerchantImportJob.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000],
                    finished_at=timezone.now())
        raise
    finally:
        if writer is not None:
            writer.close()
    return MerchantImportJob.objects.get(pk=job_id)


def merchant_import_job_retry(*, job_id: int) -> bool:
    """Queue a failed job again (its file is kept until it is done); False when it is not failed."""
    with transaction.atomic():
        queued = MerchantImportJob.objects.filter(pk=job_id, status=MerchantImportJob.Status.FAILED).update(
            status=MerchantImportJob.Status.QUEUED, error="", rows_done=0, queued_at=timezone.now())
        if queued:
            enqueue_after_commit(merchant_import_task, job_id)
    return bool(queued)


def merchant_import_jobs_requeue_stale(*, now: datetime | None = None) -> int:
    """Send again the jobs whose task never arrived (queued too long) or whose worker vanished."""
    now = now or timezone.now()
    stale = MerchantImportJob.objects.filter(
        Q(status=MerchantImportJob.Status.QUEUED, queued_at__lt=now - QUEUED_STALE)
        | Q(status=MerchantImportJob.Status.RUNNING, started_at__lt=now - RUNNING_STALE))
    sent = 0
    for job_id in stale.values_list("pk", flat=True):
        if enqueue(merchant_import_task, job_id):
            MerchantImportJob.objects.filter(pk=job_id, status=MerchantImportJob.Status.QUEUED).update(queued_at=now)
            sent += 1
    if sent:
        logger.info("merchant import: %s stale job(s) sent again", sent)
    return sent
