"""Japan's business calendar: one module turns instants into business months and days and back."""

from datetime import UTC, date, datetime

import pytest

from mercari_ops.common.business_time import (
    business_date,
    business_month,
    business_month_label,
    business_month_of_iso,
    day_bounds,
    month_bounds,
    month_shift,
)


@pytest.mark.parametrize("instant, month", [
    ("2026-11-30T14:59:59Z", date(2026, 11, 1)),
    ("2026-11-30T15:00:00Z", date(2026, 12, 1)),
    ("2026-12-01T00:00:00+09:00", date(2026, 12, 1)),
    ("2026-12-31T15:00:00Z", date(2027, 1, 1)),
])
def test_the_business_month_of_an_instant_is_japans(instant, month):
    assert business_month_of_iso(instant) == month


def test_a_month_is_the_instants_between_japans_midnights():
    assert month_bounds("2026-12") == (datetime(2026, 11, 30, 15, tzinfo=UTC), datetime(2026, 12, 31, 15, tzinfo=UTC))
    assert month_bounds(date(2026, 12, 17)) == month_bounds("2026-12")


def test_a_day_is_the_instants_between_japans_midnights():
    assert day_bounds(date(2026, 12, 1)) == (datetime(2026, 11, 30, 15, tzinfo=UTC),
                                             datetime(2026, 12, 1, 15, tzinfo=UTC))
    assert business_date(datetime(2026, 11, 30, 16, tzinfo=UTC)) == date(2026, 12, 1)


def test_with_utc_as_the_business_zone_months_are_utc_months(settings):
    settings.BUSINESS_TIME_ZONE = "UTC"
    assert business_month_of_iso("2026-11-30T15:00:00Z") == date(2026, 11, 1)
    assert month_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))


def test_month_arithmetic_crosses_years_and_refuses_naive_instants():
    assert month_shift(date(2026, 1, 1), -1) == date(2025, 12, 1)
    assert month_shift(date(2026, 12, 1), 1) == date(2027, 1, 1)
    assert business_month_label(datetime(2026, 12, 31, 15, tzinfo=UTC)) == "2027-01"
    with pytest.raises(ValueError, match="naive"):
        business_month(datetime(2026, 12, 1))


@pytest.mark.django_db
def test_nightly_crontabs_run_at_japans_times():
    from django_celery_beat.models import PeriodicTask

    from mercari_ops.common.periodic import periodic_tasks_sync

    periodic_tasks_sync()

    nightly = PeriodicTask.objects.get(name="loyalty.nightly_downgrades")
    assert (nightly.crontab.hour, nightly.crontab.minute, str(nightly.crontab.timezone)) == ("0", "5", "Asia/Tokyo")
