"""LINE's charts on the admin's operations page: requests per minute against the limit, 429s, backlog."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import translation

from line_integration.models import LineRequest, OutboundMessage
from line_integration.selectors import line_ops_charts
from mercari_ops.common.dashboard import hours_window

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _english():
    """Chart names as the English page shows them (the Japanese page: test_admin_japanese.py)."""
    with translation.override("en"):
        yield


def _request(kind: str, *, created, sent=None, last_status=None, status="sent") -> None:
    LineRequest.objects.create(kind=kind, body={}, next_attempt_at=created, created_at=created, sent_at=sent,
                               last_status=last_status, status=status)


def _message(n: int, *, created, sent=None, status="queued") -> None:
    OutboundMessage.objects.create(dispatch_id=f"d-{n}", user_id=f"c-{n}", created_at=created, sent_at=sent,
                                   status=status)


def test_requests_per_minute_429s_and_backlog_per_hour():
    hours = hours_window()
    this_hour, two_ago = hours[-1], hours[-3]
    # given (rows inserted in the order they were made): a message left queued from before the window
    _message(0, created=hours[0] - timedelta(hours=1))
    # multicast requests two hours ago; a message made then and sent this hour
    for _ in range(2):
        _request("multicast", created=two_ago + timedelta(minutes=4), sent=two_ago + timedelta(minutes=4, seconds=1))
    _message(1, created=two_ago + timedelta(minutes=10), sent=this_hour + timedelta(minutes=2), status="sent")
    # this hour: three pushes sent in one minute, one in another, one refused with 429 and waiting
    for second in (1, 20, 40):
        _request("push", created=this_hour, sent=this_hour + timedelta(minutes=1, seconds=second))
    _request("push", created=this_hour, sent=this_hour + timedelta(minutes=5))
    _request("push", created=this_hour, last_status=429, status="pending")
    _message(2, created=this_hour)
    _message(3, created=this_hour, status="skipped")  # never queued
    # when
    busiest, average, limited, backlog = line_ops_charts(hours=hours)
    # then
    by_kind = dict(busiest.series)
    assert (by_kind["push"][-1], by_kind["multicast"][-3], sum(by_kind["push"][:-1])) == (3, 2, 0)
    assert busiest.limit[1] == settings.LINE_PUSH_RATE_PER_SECOND * 60
    assert dict(average.series)["push"][-1] == round(4 / 60, 1)
    assert dict(limited.series)["last answer 429"] == [0] * 23 + [1]
    assert dict(backlog.series)["queued"] == [1] * 21 + [2, 2, 2]


def test_nothing_yet_draws_flat_charts():
    charts = line_ops_charts(hours=hours_window())
    assert len(charts) == 4
    assert all(value in (0, 0.0) for chart in charts for _name, values in chart.series for value in values)
