"""Topics and their handlers, registered by the owning app in AppConfig.ready().

    register_topic("loyalty-activity", schema=ACTIVITY_SCHEMA, handle=activity_handle,
                   handle_batch=activity_handle_batch, keep_payload=False)

A handler receives the cleaned event dict and runs inside the transaction
that records the event. It returns None (processed) or `Waiting(on=key)` when
it needs another event first; it raises `PermanentEventError` when the event
can never succeed (dead letter, 400) and anything else for a transient
failure (retried from the inbox row with backoff).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mercari_ops.common.errors import ValidationFailed
from mercari_ops.common.schema import Schema


class PermanentEventError(ValidationFailed):
    """The event can never succeed as sent (invalid transition, unknown reference...)."""


class TransientEventError(Exception):
    """Try again later (a peer is down, a lock timed out)."""


@dataclass(frozen=True)
class Waiting:
    on: str
    reason: str = ""


@dataclass(frozen=True)
class Topic:
    name: str
    schema: Schema
    handle: Callable[[dict], Any]
    handle_batch: Callable[[list[dict]], None] | None = None
    keep_payload: bool = True
    order_key: str = "occurred_at"
    # Events with different values of this field never affect each other (e.g. customer_id): a backfill
    # may apply them on parallel connections, each value always on the same one, in file order.
    partition_key: str | None = None


_TOPICS: dict[str, Topic] = {}


def register_topic(name: str, **kwargs) -> Topic:
    topic = Topic(name=name, **kwargs)
    _TOPICS[name] = topic
    return topic


def unregister_topic(name: str) -> None:
    _TOPICS.pop(name, None)


def get_topic(name: str) -> Topic | None:
    return _TOPICS.get(name)


def topic_names() -> list[str]:
    return sorted(_TOPICS)
