"""The operators' inbox actions ("replay", "discard") driven through the admin, as an operator clicks them."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.db import OperationalError
from django.utils import timezone

from conftest import push_body
from mercari_ops.inbox.models import DeadLetter, InboxEvent
from mercari_ops.inbox.services import inbox_process_due

pytestmark = pytest.mark.django_db
EVENTS = "/admin/inbox/inboxevent/"
LETTERS = "/admin/inbox/deadletter/"


@pytest.fixture
def operator(client):
    user = User.objects.create_user("olga", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="operators"))
    client.force_login(user)
    return client


def fails_first(times: int, calls: list):
    """A handler that fails transiently `times` times, then succeeds."""

    def handle(event):
        calls.append(event["event_id"])
        if len(calls) <= times:
            raise OperationalError("could not obtain lock on row")

    return handle


def run_action(client, url: str, action: str, pks: list[int]) -> str:
    response = client.post(url, {"action": action, "_selected_action": pks}, follow=True)
    assert response.status_code == 200
    return response.content.decode()


def test_operator_replays_a_dead_event_and_it_is_processed(operator, push, test_topic, settings):
    # given: an event that died after its only attempt (the handler failed transiently)
    settings.INBOX_MAX_ATTEMPTS = 1
    name, _, register = test_topic
    calls: list = []
    register(fails_first(1, calls))
    push(name, {"event_id": "e-dead"})
    row = InboxEvent.objects.get(event_id="e-dead")
    assert row.status == "dead"
    # when
    page = run_action(operator, EVENTS, "replay", [row.pk])
    # then
    assert "Replayed: processed 1" in page
    row.refresh_from_db()
    assert (row.status, calls) == ("processed", ["e-dead", "e-dead"])


def test_replaying_a_processed_event_does_not_run_the_handler_again(operator, push, test_topic):
    name, calls, _ = test_topic
    push(name, {"event_id": "e-done"})
    row = InboxEvent.objects.get(event_id="e-done")
    page = run_action(operator, EVENTS, "replay", [row.pk])
    assert "Replayed: duplicate 1" in page
    assert calls == [{"event_id": "e-done"}]
    assert InboxEvent.objects.get(pk=row.pk).status == "processed"


def test_operator_discards_an_event_and_the_sweeper_never_runs_it(operator, push, test_topic):
    # given: one event waiting for a retry, one processed
    name, _, register = test_topic
    calls: list = []
    register(fails_first(1, calls))
    push(name, {"event_id": "e-retry"})
    push(name, {"event_id": "e-ok"})
    retry, done = InboxEvent.objects.get(event_id="e-retry"), InboxEvent.objects.get(event_id="e-ok")
    assert (retry.status, done.status) == ("retry", "processed")
    # when
    page = run_action(operator, EVENTS, "discard", [retry.pk, done.pk])
    # then
    assert "Discarded the selected unprocessed events." in page
    retry.refresh_from_db()
    assert (retry.status, retry.next_attempt_at, retry.last_error) == ("discarded", None, "discarded by olga")
    assert InboxEvent.objects.get(pk=done.pk).status == "processed"  # processed rows are never discarded
    assert inbox_process_due(now=timezone.now() + timedelta(days=1)) == {}
    assert calls == ["e-retry", "e-ok"]


def bad_letter(push, name: str) -> DeadLetter:
    """A push without event_id: its dead letter."""
    push(name, body=push_body({"n": 1}))
    return DeadLetter.objects.get()


def test_replaying_a_dead_letter_that_is_still_bad_keeps_it_open_and_says_why(operator, push, test_topic):
    name, calls, _ = test_topic
    letter = bad_letter(push, name)
    page = run_action(operator, LETTERS, "replay", [letter.pk])
    assert "Replayed 0 dead letters." in page
    assert f"Still failing: #{letter.pk}: event_id is required" in page
    letter.refresh_from_db()
    assert (letter.status, letter.field) == ("open", "event_id")
    assert calls == [] and not InboxEvent.objects.exists()


def test_operator_discards_a_dead_letter(operator, push, test_topic):
    name, calls, _ = test_topic
    letter = bad_letter(push, name)
    page = run_action(operator, LETTERS, "discard", [letter.pk])
    assert "Discarded." in page
    letter.refresh_from_db()
    assert (letter.status, letter.resolved_by) == ("discarded", "olga")
    assert letter.resolved_at is not None
    # a discarded letter is not replayed even when selected again
    assert "Replayed 0 dead letters." in run_action(operator, LETTERS, "replay", [letter.pk])
    assert calls == [] and DeadLetter.objects.get().status == "discarded"


def test_marketer_cannot_run_inbox_actions(client, push, test_topic):
    name, _, _ = test_topic
    push(name, body=push_body({"n": 1}))
    letter = DeadLetter.objects.get()
    user = User.objects.create_user("mika", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="marketers"))
    client.force_login(user)
    response = client.post(LETTERS, {"action": "discard", "_selected_action": [letter.pk]})
    assert response.status_code == 403
    assert DeadLetter.objects.get().status == "open"
