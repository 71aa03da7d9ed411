"""The inbox's statements: one fixed text each, prepared once per connection, rows as the ORM reads them."""

import pytest
from django.db import connection, transaction
from django.utils import timezone

from mercari_ops.inbox import inbox_sql
from mercari_ops.inbox.models import InboxEvent
from mercari_ops.inbox.services import inbox_accept, inbox_accept_batch

pytestmark = pytest.mark.django_db


def prepared_statements() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return {row[0] for row in cursor.fetchall()}


def test_the_inbox_inserts_are_prepared_once_per_connection(test_topic):
    # given: the prepare threshold of DATABASES OPTIONS (settings)
    name, _, register = test_topic
    topic = register()
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    assert threshold is not None
    # when: more single events and batches than the threshold go in
    for n in range(threshold + 1):
        inbox_accept(topic=topic, event={"event_id": f"one-{n}"})
        inbox_accept_batch(topic=topic, events=[{"event_id": f"many-{n}-{i}"} for i in range(3)])
    # then: each statement had one text every time, so psycopg prepared it once (it sends statements with $n
    # placeholders: compare up to the first)
    prepared = prepared_statements()
    for statement in (inbox_sql.ROW_INSERT, inbox_sql.ROWS_INSERT):
        head = statement.split("%s")[0]
        assert sum(s.startswith(head) for s in prepared) == 1, head
    assert InboxEvent.objects.filter(topic=name).count() == 4 * (threshold + 1)


def test_rows_are_written_as_processed_and_a_repeat_is_skipped(test_topic):
    name = test_topic[0]
    now = timezone.now()
    with transaction.atomic():
        first = inbox_sql.rows_insert(topic=name, events=[({"event_id": "b"}, "m-b"), ({"event_id": "a"}, "m-a")],
                                      keep_payload=True, now=now)
        again = inbox_sql.rows_insert(topic=name, events=[({"event_id": "a"}, "m-a"), ({"event_id": "c"}, "m-c")],
                                      keep_payload=False, now=now)
        single = inbox_sql.rows_insert(topic=name, events=[({"event_id": "c"}, "m-c")], keep_payload=True, now=now)
    assert list(first) == ["a", "b"] and list(again) == ["c"] and single == {}  # new rows only, event_id order
    rows = {row.event_id: row for row in InboxEvent.objects.filter(topic=name)}
    assert {row.pk for row in rows.values()} == {*first.values(), *again.values()}
    assert [(rows[e].status, rows[e].attempts, rows[e].message_id, rows[e].payload) for e in "abc"] == [
        ("processed", 1, "m-a", {"event_id": "a"}), ("processed", 1, "m-b", {"event_id": "b"}),
        ("processed", 1, "m-c", None)]
    assert InboxEvent.objects.filter(topic=name, payload__isnull=True).count() == 1  # SQL NULL, not JSON null
    assert rows["a"].received_at == rows["a"].processed_at == now
