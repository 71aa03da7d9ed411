"""The admin's operations page: operators only, the metrics' own figures (snapshot()), the last 24 hours."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.utils import timezone

from mercari_ops.common.dashboard import hours_window, id_since, inbox_charts
from mercari_ops.common.metrics import snapshot
from mercari_ops.common.roles import OPERATORS
from mercari_ops.inbox.models import InboxEvent

pytestmark = pytest.mark.django_db
URL = "/admin/operations/"


def _events(topic: str, statuses: list[str], at) -> None:
    InboxEvent.objects.bulk_create([
        InboxEvent(topic=topic, event_id=f"{topic}-{i}-{at.timestamp()}", status=status, received_at=at)
        for i, status in enumerate(statuses)])


def _staff(client, name: str, *, group: str | None = None, perms: tuple[str, ...] = ()) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    if group:
        user.groups.add(Group.objects.get(name=group))
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client.force_login(user)
    return user


def test_only_staff_who_may_view_the_inbox_see_the_page(client):
    assert client.get(URL).status_code == 302  # to the admin's login
    _staff(client, "marketer-ish", perms=("campaigns.view_campaign",))
    assert client.get(URL).status_code == 403
    _staff(client, "operator", group=OPERATORS)
    response = client.get(URL)
    assert response.status_code == 200 and 'id="operations"' in response.content.decode()


def test_the_index_links_operators_to_the_page(client):
    _staff(client, "operator", group=OPERATORS)
    assert 'href="/admin/operations/"' in client.get("/admin/").content.decode()


def test_figures_are_the_metrics_snapshot(client):
    now = timezone.now()
    _events("payment-events", ["dead", "dead", "waiting"], now - timedelta(minutes=5))
    _staff(client, "operator", group=OPERATORS)
    content = client.get(URL).content.decode()
    backlog = snapshot()["mercari_ops_inbox_backlog_events"]
    assert backlog[("payment-events", "dead")] == 2
    # every scrape gauge is on the page, with the value /metrics would serve
    row = re.search(r"<code>mercari_ops_inbox_backlog_events</code>.*?</tr>", content, re.S).group(0)
    assert re.search(r"topic=payment-events, status=dead</span> <strong>2</strong>", row)
    assert re.search(r"topic=payment-events, status=waiting</span> <strong>1</strong>", row)
    for name in ("mercari_ops_database_up", "mercari_ops_line_outbound_messages", "mercari_ops_campaigns_bills"):
        assert f"<code>{name}</code>" in content


def test_inbox_charts_count_each_hour_by_status():
    # given events older than the window, of two hours ago and of this hour (inserted as they arrived)
    hours = hours_window()
    _events("loyalty-activity", ["dead"] * 7, hours[0] - timedelta(hours=2))
    _events("loyalty-activity", ["processed"] * 5, hours[-3] + timedelta(minutes=10))
    _events("loyalty-activity", ["processed", "processed", "retry", "dead"], hours[-1] + timedelta(seconds=1))
    # when
    (chart,) = inbox_charts(hours=hours)
    # then
    series = dict(chart.series)
    assert "loyalty-activity" in chart.title and len(chart.x_labels) == 24
    assert (series["accepted"][-3], series["accepted"][-1], sum(series["accepted"])) == (5, 4, 9)
    assert (series["retrying"][-1], series["dead"][-1], sum(series["dead"])) == (1, 1, 1)


def test_the_page_draws_the_charts_with_their_data_tables(client):
    _events("payment-events", ["processed", "waiting"], timezone.now())
    _staff(client, "operator", group=OPERATORS)
    content = client.get(URL).content.decode()
    assert "Event inbox: payment-events, per hour received" in content
    assert content.count("<svg") >= 1 + 4  # the inbox's chart and LINE's four
    assert "LINE requests per minute: the busiest minute of each hour" in content


def test_id_since_finds_the_first_recent_row_across_gaps():
    start = timezone.now() - timedelta(hours=30)
    _events("t", ["processed"] * 40, start)  # ids in a row, then a gap, then rows an hour apart
    InboxEvent.objects.filter(event_id__endswith="-39-" + str(start.timestamp())).delete()
    for hours in range(1, 30):
        _events("t", ["processed"], start + timedelta(hours=hours))
    rows = InboxEvent.objects.all()
    for hours in (0, 1, 7, 29):
        since = start + timedelta(hours=hours)
        expected = rows.filter(received_at__gte=since).order_by("pk").values_list("pk", flat=True).first()
        assert id_since(rows, field_name="received_at", since=since) == expected
    assert id_since(rows, field_name="received_at", since=start + timedelta(hours=31)) is None
    assert id_since(InboxEvent.objects.none(), field_name="received_at", since=start) is None


def test_finished_hours_are_counted_once(django_assert_max_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    hours = hours_window()
    _events("loyalty-activity", ["processed"] * 3, hours[-3] + timedelta(minutes=10))
    _events("loyalty-activity", ["processed"] * 2, hours[-1])
    current_first = InboxEvent.objects.filter(received_at__gte=hours[-1]).order_by("pk").values_list("pk", flat=True)[0]
    first = inbox_charts(hours=hours)
    with CaptureQueriesContext(connection) as queries:
        again = inbox_charts(hours=hours)
    assert dict(first[0].series)["accepted"] == dict(again[0].series)["accepted"]
    assert dict(again[0].series)["accepted"][-3:] == [3, 0, 2]
    grouped = [q["sql"] for q in queries.captured_queries if "GROUP BY" in q["sql"] and "received_at" in q["sql"]
               and "status" not in q["sql"]]
    assert len(grouped) == 1 and f'"id" >= {current_first}' in grouped[0]  # only the current hour read again
