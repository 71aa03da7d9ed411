"""Every time the demo writes into its events lies before the seed's `now`, whatever day it runs: the last
and first hours of a month (bills of last month settle "early next month"), a leap day, New Year in Japan."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from campaigns import demo as campaigns_demo
from history import demo as history_demo
from loyalty import demo as loyalty_demo

TOKYO = ZoneInfo("Asia/Tokyo")
DAYS = [datetime(2026, 12, 1, 0, 30, tzinfo=TOKYO), datetime(2026, 12, 5, 10, 0, tzinfo=TOKYO),
        datetime(2026, 12, 31, 23, 50, tzinfo=TOKYO), datetime(2027, 1, 1, 0, 10, tzinfo=TOKYO),
        datetime(2028, 2, 29, 12, 0, tzinfo=TOKYO)]
TIME_FIELDS = ("settled_at", "paid_at", "occurred_at", "changed_at")


def times_in(event: dict):
    for key, value in event.items():
        if key in TIME_FIELDS:
            yield key, datetime.fromisoformat(value.replace("Z", "+00:00"))
        elif key == "lines":
            for line in value:
                yield from times_in(line)


@pytest.mark.parametrize("now", DAYS, ids=lambda d: d.isoformat())
def test_no_demo_event_time_after_now(now):
    events = campaigns_demo._card_status_events(now)
    events += campaigns_demo._bill_events(campaigns_demo._month_start(now, -1), now)
    for index, customer in enumerate(history_demo.CUSTOMERS):
        events += history_demo._events(customer, index, now)
    for number in range(1, 200):
        events += loyalty_demo._events_for(number, now)
    late = [(event.get("event_id"), key, at) for event in events for key, at in times_in(event) if at > now]
    assert late == []
    settled = {event["settled_at"] for event in events if "settled_at" in event}
    assert len(settled) == 1 and now - timedelta(days=31) < datetime.fromisoformat(settled.pop()) <= now
