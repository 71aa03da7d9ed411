"""`platform-ping`: a no-op topic for smoke tests, curl checks and the ingestion benchmark."""

from mercari_ops.common.schema import Schema, Str

from .registry import register_topic

register_topic(
    "platform-ping",
    schema=Schema({"event_id": Str(max_length=128)}),
    handle=lambda event: None,
    keep_payload=False,
)
