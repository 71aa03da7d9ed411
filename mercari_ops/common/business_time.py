"""Japan's business calendar: every business month and day is taken in `BUSINESS_TIME_ZONE`.

Instants are stored in UTC. A month or a day (loyalty buckets and windows, campaign periods as entered,
settlement and backtest months, provisions, nightly jobs) is a local notion: a purchase at
2026-11-30T20:00:00Z happened on 1 December in Japan, and counts in December. Every conversion between the
two goes through this module, so there is one rule in one place. `BUSINESS_TIME_ZONE=UTC` gives the
calendar of UTC.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

from django.conf import settings

MONTH_FORMAT = "%Y-%m"


@cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def business_zone() -> ZoneInfo:
    return _zone(settings.BUSINESS_TIME_ZONE)


def business_local(instant: datetime) -> datetime:
    """The instant as wall time in the business zone."""
    if instant.tzinfo is None:
        raise ValueError("a naive datetime has no instant: give it a zone")
    return instant.astimezone(business_zone())


def business_date(instant: datetime) -> date:
    return business_local(instant).date()


def business_month(moment: datetime | date) -> date:
    """The first day of the business month of an instant (a date is taken as already local)."""
    local = business_local(moment) if isinstance(moment, datetime) else moment
    return date(local.year, local.month, 1)


def business_month_of_iso(text: str) -> date:
    """The business month of an RFC 3339 instant ("2026-11-30T15:00:00Z")."""
    return business_month(datetime.fromisoformat(text))


def business_month_label(moment: datetime | date) -> str:
    """ "YYYY-MM" of the business month of an instant or a local date."""
    return business_month(moment).strftime(MONTH_FORMAT)


def month_parse(month: str) -> date:
    """ "YYYY-MM" -> its first day; ValueError for anything else."""
    return datetime.strptime(month, MONTH_FORMAT).date()


def month_shift(month: date, months: int) -> date:
    """The first day of the month `months` after (negative: before) the month of `month`."""
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The instants [start, end) of a business day."""
    start = datetime.combine(day, time.min, tzinfo=business_zone())
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=business_zone())
    return start, end


def month_bounds(month: str | date) -> tuple[datetime, datetime]:
    """The instants [start, end) of a business month ("YYYY-MM" or any date in it)."""
    first = month_parse(month) if isinstance(month, str) else date(month.year, month.month, 1)
    zone = business_zone()
    return (datetime.combine(first, time.min, tzinfo=zone),
            datetime.combine(month_shift(first, 1), time.min, tzinfo=zone))
