from datetime import timedelta

from celery import shared_task
from django.conf import settings

from mercari_ops.common.periodic import periodic_task

from . import services


@shared_task(name="history.repayment_deliver", bind=True, acks_late=True, max_retries=None)
def repayment_deliver_task(self, request_pk: int):
    """Send one repayment request; retried with the outbox's backoff while the service is unavailable."""
    delivery = services.repayment_deliver(request_pk=request_pk)
    if delivery.status == "retry" and self.request.retries + 1 < settings.REPAYMENT_MAX_ATTEMPTS:
        raise self.retry(countdown=delivery.retry_in)
    return delivery.status


@periodic_task(name="history.repayment_sweep", every=timedelta(seconds=30), queue="events")
def repayment_sweep():
    """Deliver pending repayment requests whose task was lost or whose backoff has passed."""
    return services.repayment_sweep()
