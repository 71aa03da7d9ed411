"""The emergency stop of LINE sending: one person's action (no change request), always audited."""

from __future__ import annotations

import time

from django.db import transaction
from django.utils import timezone

from mercari_ops.common.audit import audit_record

from ..models import SendingPause

_CACHE_SECONDS = 1.0
_cached: tuple[float, bool] = (0.0, False)


def sending_paused(*, fresh: bool = False) -> bool:
    """Whether LINE sending is paused; read at most once a second per process (a sender checks every batch)."""
    global _cached
    now = time.monotonic()
    if fresh or now >= _cached[0]:
        paused = SendingPause.objects.filter(pk=1, paused=True).exists()
        _cached = (now + _CACHE_SECONDS, paused)
    return _cached[1]


@transaction.atomic
def sending_pause_set(*, paused: bool, by: str, reason: str = "", request=None) -> SendingPause:
    switch, _ = SendingPause.objects.select_for_update().get_or_create(pk=1)
    before = {"paused": switch.paused, "reason": switch.reason}
    switch.paused, switch.reason = paused, reason[:300]
    switch.changed_by, switch.changed_at = by, timezone.now()
    switch.save()
    audit_record(action="line.sending_pause" if paused else "line.sending_resume", target=switch,
                 before=before, after={"paused": paused, "reason": switch.reason}, request=request, actor=by)
    sending_paused(fresh=True)
    return switch
