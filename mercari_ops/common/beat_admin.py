"""Periodic tasks in the admin: what each one does, when it last ran and when it runs next, in business time.

django-celery-beat's own PeriodicTaskAdmin is kept (its form, actions and crontab help) and re-registered
as a subclass with three columns: the description from our `@periodic_task` declarations (the row's own
description for a task added by hand), and the last and next run in BUSINESS_TIME_ZONE (Asia/Tokyo).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from celery.schedules import crontab
from django.conf import settings
from django.contrib import admin
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from .audit_admin import AuditedDeleteMixin
from .periodic import PERIODIC_TASKS


def business_time_label(at: datetime | None) -> str:
    """'2026-12-05 21:03:07 JST': an instant in the business time zone, seconds shown (jobs run every 10 s)."""
    if at is None:
        return "\u2014"
    return at.astimezone(ZoneInfo(settings.BUSINESS_TIME_ZONE)).strftime("%Y-%m-%d %H:%M:%S %Z")


def periodic_task_next_run(task: PeriodicTask, now: datetime | None = None) -> datetime | None:
    """When beat will next send `task` (None: paused, finished one-off, or a schedule beat cannot compute)."""
    if not task.enabled:
        return None
    last = task.last_run_at or (now or timezone.now())
    try:
        schedule = task.schedule
        if isinstance(schedule, crontab):
            # From the last run alone (beat's own arithmetic), so a past "next run" shows beat is not running.
            start, delta, _ = schedule.remaining_delta(last)
            return start + delta
        return last + schedule.run_every
    except (AttributeError, TypeError, ValueError):  # a row without a schedule, or one beat itself refuses
        return None


def periodic_task_description(task: PeriodicTask) -> str:
    spec = PERIODIC_TASKS.get(task.task)
    return (spec.description if spec is not None and spec.description else task.description) or ""


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(AuditedDeleteMixin, BeatPeriodicTaskAdmin):
    list_display = ("name", "what_it_does", "enabled", "scheduler", "last_run", "next_run", "one_off")
    readonly_fields = (*BeatPeriodicTaskAdmin.readonly_fields, "what_it_does", "last_run", "next_run")
    fieldsets = (
        (None, {"fields": ("name", "what_it_does", "regtask", "task", "enabled", "description"),
                "classes": ("extrapretty", "wide")}),
        (_("When"), {"fields": ("last_run", "next_run"), "classes": ("extrapretty", "wide")}),
        *BeatPeriodicTaskAdmin.fieldsets[1:],
    )

    @admin.display(description=_("what it does"))
    def what_it_does(self, obj):
        return periodic_task_description(obj)

    @admin.display(description=_("last run (business time)"), ordering="last_run_at")
    def last_run(self, obj):
        return business_time_label(obj.last_run_at)

    @admin.display(description=_("next run (business time)"))
    def next_run(self, obj):
        if not obj.enabled:
            return _("paused")
        return business_time_label(periodic_task_next_run(obj))
