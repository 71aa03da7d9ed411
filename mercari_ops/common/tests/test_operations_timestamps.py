"""The operations page shows `*_timestamp_seconds` gauges (beat's last tick) as a local time and an age, not
as a number of seconds since 1970 (issue 20)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone, translation

from mercari_ops.common.dashboard import metric_rows, timestamp_shown
from mercari_ops.common.metrics.platform import beat_tick_record
from mercari_ops.common.roles import OPERATORS

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)  # 21:00 in Tokyo


@translation.override("en")
def test_a_timestamp_reads_as_tokyo_time_and_age():
    assert timestamp_shown(NOW.timestamp() - 12, NOW) == "2026-12-05 20:59:48 (12 s ago)"
    assert timestamp_shown(NOW.timestamp() - 600, NOW) == "2026-12-05 20:50:00 (10 min ago)"
    assert timestamp_shown(NOW.timestamp() - 5 * 3600, NOW) == "2026-12-05 16:00:00 (5 h ago)"
    assert timestamp_shown(NOW.timestamp() - 3 * 86400, NOW) == "2026-12-02 21:00:00 (3 days ago)"
    assert timestamp_shown(NOW.timestamp(), NOW) == "2026-12-05 21:00:00 (just now)"
    assert timestamp_shown(0.0, NOW) == "never"


@pytest.mark.django_db
def test_the_page_shows_beats_last_tick_as_local_time_and_age(client):
    # given beat ticked 12 seconds ago
    tick = timezone.now().timestamp() - 12
    beat_tick_record(tick)
    with translation.override("en"):
        rows = metric_rows()
    row = next(r for r in rows if r["name"] == "mercari_ops_celery_beat_last_tick_timestamp_seconds")
    ((_labels, value, text),) = row["values"]
    assert value == pytest.approx(tick) and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(1[2-9] s ago\)", text)
    # when an operator opens the operations page
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=OPERATORS))
    client.force_login(user)
    content = client.get("/admin/operations/").content.decode()
    # then the tick reads as Tokyo time and age, not as seconds since 1970
    local = datetime.fromtimestamp(tick, tz=timezone.get_current_timezone()).strftime("%Y-%m-%d %H:%M")
    cell = re.search(r"<code>mercari_ops_celery_beat_last_tick_timestamp_seconds</code>.*?</tr>", content, re.S)
    assert cell and local in cell.group(0) and " s ago)" in cell.group(0)
    assert f"{int(tick):,}" not in cell.group(0) and str(int(tick)) not in re.sub(r'title="[^"]*"', "", cell.group(0))
