"""Every write of the event inbox.

Flow of one push: decode the envelope and the event, validate it against the
topic's schema (failure: dead letter, 400), then in one transaction insert the
(topic, event_id) row -- ON CONFLICT DO NOTHING is the dedupe -- and run the
topic's handler in a savepoint. The row is written optimistically as
processed; other outcomes update it. A transient handler failure leaves the
row in `retry` with a backoff; `inbox_process_due` (a beat job) runs it again
until it succeeds or reaches INBOX_MAX_ATTEMPTS (then `dead`).
"""

from .accept import (
    inbox_accept,
    inbox_accept_alone,
    inbox_accept_batch,
    inbox_accept_group,
    inbox_accept_stream,
    inbox_receive,
)
from .envelope import (
    OVERSIZED_BODY_KEPT_BYTES,
    dead_letter_record,
    envelope_decode,
    event_clean,
    inbox_refuse_oversized,
)
from .handler import Outcome, Result
from .operations import (
    database_reachable,
    dead_letter_body_edit,
    dead_letter_discard,
    dead_letter_event_check,
    dead_letter_raw_body_edit,
    dead_letter_replay,
    inbox_event_discard,
    inbox_event_replay,
    inbox_process_due,
    inbox_release_waiting,
    inbox_retention_apply,
    inbox_sweep_waiting,
)

__all__ = [
    "OVERSIZED_BODY_KEPT_BYTES", "Outcome", "Result", "database_reachable", "dead_letter_body_edit",
    "dead_letter_discard", "dead_letter_event_check", "dead_letter_raw_body_edit",
    "dead_letter_record", "dead_letter_replay", "envelope_decode", "event_clean", "inbox_accept",
    "inbox_accept_alone", "inbox_accept_batch", "inbox_accept_group", "inbox_accept_stream", "inbox_event_discard",
    "inbox_event_replay", "inbox_process_due", "inbox_receive", "inbox_refuse_oversized",
    "inbox_release_waiting", "inbox_retention_apply", "inbox_sweep_waiting",
]
