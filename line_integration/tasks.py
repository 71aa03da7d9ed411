"""Thin Celery tasks on the `line` queue (routed by the `line.` name prefix)."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from mercari_ops.common.periodic import periodic_task
from mercari_ops.common.ratelimit import concurrency_limiter

from . import services
from .services.pause import sending_paused
from .services.sender import work_pending


@shared_task(name="line.send_due", acks_late=True)
def line_send_due():
    """Plan and send due LINE messages for a while; hands over to a fresh task if work remains."""
    limiter = concurrency_limiter()
    token = limiter.acquire("line:sender", limit=settings.LINE_SENDER_CONCURRENCY,
                            ttl=settings.LINE_SENDER_TASK_SECONDS + 60)
    if token is None:
        return {"skipped": "enough senders running"}
    try:
        result = services.sender_run(seconds=settings.LINE_SENDER_TASK_SECONDS)
    finally:
        limiter.release("line:sender", token)
    if work_pending() and not sending_paused():
        line_send_due.delay()
    return result


@periodic_task(name="line.kick_senders", every=timedelta(seconds=5), queue="line", description=_(
    "Start senders when anything is due, so no accepted message is stranded; retry rich-menu changes."))
def line_kick_senders():
    """Start senders when anything is due, so no accepted message is stranded; retry rich-menu changes."""
    started = 0
    if work_pending() and not sending_paused():
        for _sender in range(settings.LINE_SENDER_CONCURRENCY):
            line_send_due.delay()
            started += 1
    return {"senders_started": started, "rich_menus": services.rich_menu_sync(limit=200)}


@periodic_task(name="line.audience_sync", crontab={"minute": "*/3"}, queue="line", description=_(
    "Add linked LINE users to the audience group (<= 10 jobs in progress, <= 60 calls a minute)."))
def line_audience_sync():
    """Add linked LINE users to the audience group (<= 10 jobs in progress, <= 60 calls a minute)."""
    return services.audience_sync()
