from datetime import timedelta

from django.utils.translation import gettext_lazy as _

from mercari_ops.common.periodic import periodic_task

from . import services


@periodic_task(name="inbox.process_due", every=timedelta(seconds=10), queue="events",
               description=_("Retry inbox events whose backoff has passed."))
def inbox_process_due():
    """Retry inbox events whose backoff has passed."""
    return services.inbox_process_due()


@periodic_task(name="inbox.sweep_waiting", every=timedelta(minutes=1), queue="events",
               description=_("Alert on, then dead-letter, events waiting too long for another event."))
def inbox_sweep_waiting():
    """Alert on, then dead-letter, events waiting too long for another event."""
    return services.inbox_sweep_waiting()


@periodic_task(name="inbox.retention", crontab={"minute": 17, "hour": 3}, queue="default",
               description=_("Delete processed payloads older than INBOX_RETENTION_DAYS, keeping dedupe keys."))
def inbox_retention():
    """Delete processed payloads older than INBOX_RETENTION_DAYS, keeping dedupe keys."""
    return {"cleared": services.inbox_retention_apply()}
