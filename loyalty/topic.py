"""The `loyalty-activity` topic (CONTRACTS section 1): schema and handlers."""

from datetime import timedelta

from django.conf import settings

from mercari_ops.common.schema import MAX_YEN, DateTime, Int, Schema, Str
from mercari_ops.inbox.registry import register_topic

from .services.activity import activity_handle, activity_handle_batch

TOPIC = "loyalty-activity"

ACTIVITY_SCHEMA = Schema({
    "event_id": Str(max_length=128),
    "customer_id": Str(max_length=64),
    "kind": Str(max_length=4, choices=("sell", "buy", "pay")),
    "amount": Int(min_value=-MAX_YEN, max_value=MAX_YEN),
    "occurred_at": DateTime(future_tolerance=timedelta(seconds=settings.EVENT_FUTURE_TOLERANCE_SECONDS)),
})

# keep_payload=False: the inbox keeps only (topic, event_id) once the event is processed.
register_topic(TOPIC, schema=ACTIVITY_SCHEMA, handle=activity_handle, handle_batch=activity_handle_batch,
               keep_payload=False, order_key="occurred_at", partition_key="customer_id")
