"""The dead letter's page as an operator uses it: the decoded event edited as JSON, checked against the
topic's schema, written back into the envelope, then replayed or discarded with the page's buttons."""

import base64
import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone, translation

from conftest import push_body
from mercari_ops.common.models import AuditLogEntry
from mercari_ops.inbox.admin_pages import age_label
from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db
LETTERS = "/admin/inbox/deadletter/"


def login(client, group: str) -> User:
    user = User.objects.create_user(f"{group}-page", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return user


def envelope_event(raw_body: str) -> dict:
    return json.loads(base64.b64decode(json.loads(raw_body)["message"]["data"]))


@pytest.fixture
def bad_letter(push, test_topic):
    """A push whose event has a wrong type ("n" must be an integer), dead-lettered; (letter, topic, calls)."""
    name, calls, _ = test_topic
    response = push(name, {"event_id": "e-bad", "n": "seven"})
    assert response.status_code == 400
    return DeadLetter.objects.get(), name, calls


def test_the_page_shows_the_decoded_event_and_the_list_its_event_id_and_age(client, bad_letter):
    letter, _, _ = bad_letter
    login(client, "operators")
    assert letter.event_id == "e-bad"  # read from the base64 data when the letter was recorded
    page = client.get(f"{LETTERS}{letter.pk}/change/").content.decode()
    assert "&quot;n&quot;: &quot;seven&quot;" in page  # the event as JSON in the editable textarea
    assert 'name="event_json"' in page and 'name="raw_body"' not in page
    assert f"inbox/deadletter/{letter.pk}/replay/" in page and "_saveandreplay" in page
    listing = client.get(LETTERS).content.decode()
    assert "e-bad" in listing and "s ago" in listing
    assert client.get(LETTERS, {"q": "e-bad"}).content.decode().count(f"/deadletter/{letter.pk}/change/") >= 1


def test_operator_fixes_the_event_it_is_re_encoded_audited_and_replayed(client, bad_letter):
    letter, _, calls = bad_letter
    user = login(client, "operators")
    before_envelope = json.loads(letter.raw_body)
    # when: the fixed event is saved
    response = client.post(f"{LETTERS}{letter.pk}/change/", {
        "event_json": json.dumps({"event_id": "e-bad", "n": 7}), "attributes_json": '{"origin": "ops"}',
        "_continue": "1"})
    # then: the envelope carries it in base64, everything else of the envelope as it was
    assert response.status_code == 302
    letter.refresh_from_db()
    assert envelope_event(letter.raw_body) == {"event_id": "e-bad", "n": 7}
    after_envelope = json.loads(letter.raw_body)
    assert after_envelope["subscription"] == before_envelope["subscription"]
    assert after_envelope["message"]["messageId"] == before_envelope["message"]["messageId"]
    assert after_envelope["message"]["attributes"] == {"origin": "ops"}
    entry = AuditLogEntry.objects.get(action="inbox.dead_letter_edit")
    assert (entry.actor, entry.before["event"], entry.after["event"]) == (
        user.username, {"event_id": "e-bad", "n": "seven"}, {"event_id": "e-bad", "n": 7})
    assert letter.status == "open" and calls == []
    # when: Replay is pressed on the page
    page = client.post(f"{LETTERS}{letter.pk}/replay/", follow=True).content.decode()
    # then
    assert "Replayed: processed" in page
    assert calls == [{"event_id": "e-bad", "n": 7}]
    letter.refresh_from_db()
    assert (letter.status, letter.resolved_by) == ("replayed", user.username)
    assert InboxEvent.objects.get(event_id="e-bad").status == "processed"
    assert AuditLogEntry.objects.filter(action="inbox.dead_letter_replay", target_id=str(letter.pk)).exists()


def test_an_event_the_schema_refuses_is_not_saved_and_the_error_names_the_field_once(client, bad_letter):
    letter, _, _ = bad_letter
    login(client, "operators")
    body_before = letter.raw_body
    response = client.post(f"{LETTERS}{letter.pk}/change/", {
        "event_json": json.dumps({"event_id": "e-bad", "n": 1.5}), "attributes_json": "", "_continue": "1"})
    assert response.status_code == 200
    page = response.content.decode()
    errors = re.findall(r'<ul class="errorlist"[^>]*>(.*?)</ul>', page, re.S)
    assert "".join(errors).count("n must be an integer") == 1 and "n: n must" not in page
    not_json = client.post(f"{LETTERS}{letter.pk}/change/", {"event_json": '{"event_id": ', "_continue": "1"})
    assert "event is not valid JSON" in not_json.content.decode()
    bad_attributes = client.post(f"{LETTERS}{letter.pk}/change/", {
        "event_json": '{"event_id": "e-bad"}', "attributes_json": '{"k": 1}', "_continue": "1"})
    assert "attributes.k must be a string" in bad_attributes.content.decode()
    letter.refresh_from_db()
    assert letter.raw_body == body_before
    assert not AuditLogEntry.objects.filter(action="inbox.dead_letter_edit").exists()


def test_save_and_replay_in_one_press(client, bad_letter):
    letter, _, calls = bad_letter
    login(client, "operators")
    page = client.post(f"{LETTERS}{letter.pk}/change/", {
        "event_json": json.dumps({"event_id": "e-bad", "n": 8}), "attributes_json": "", "_saveandreplay": "1"},
        follow=True).content.decode()
    assert "Replayed: processed" in page
    assert calls == [{"event_id": "e-bad", "n": 8}]
    assert DeadLetter.objects.get(pk=letter.pk).status == "replayed"


def test_a_body_that_is_no_envelope_stays_editable_as_raw_text(client, push, test_topic):
    name, calls, _ = test_topic
    push(name, body=b'{"message": {"data": "!!not base64"}, "subscription": "s"}')
    letter = DeadLetter.objects.get()
    assert letter.event_id == ""
    user = login(client, "operators")
    page = client.get(f"{LETTERS}{letter.pk}/change/").content.decode()
    assert 'name="raw_body"' in page and 'name="event_json"' not in page
    fixed = push_body({"event_id": "e-raw"}).decode()
    response = client.post(f"{LETTERS}{letter.pk}/change/", {"raw_body": fixed, "_saveandreplay": "1"}, follow=True)
    assert "Replayed: processed" in response.content.decode()
    assert calls == [{"event_id": "e-raw"}]
    letter.refresh_from_db()
    assert (letter.raw_body, letter.event_id, letter.status) == (fixed, "e-raw", "replayed")
    entry = AuditLogEntry.objects.get(action="inbox.dead_letter_edit")
    assert (entry.actor, entry.after) == (user.username, {"raw_body": fixed})


def test_discard_button_closes_the_letter_and_a_closed_letter_is_read_only(client, bad_letter):
    letter, _, calls = bad_letter
    login(client, "operators")
    assert client.get(f"{LETTERS}{letter.pk}/discard/").status_code == 405  # buttons are POST only
    page = client.post(f"{LETTERS}{letter.pk}/discard/", follow=True).content.decode()
    assert "Discarded." in page
    letter.refresh_from_db()
    assert letter.status == "discarded"
    assert AuditLogEntry.objects.filter(action="inbox.dead_letter_discard").count() == 1
    closed = client.get(f"{LETTERS}{letter.pk}/change/").content.decode()
    assert 'name="event_json"' not in closed and "/replay/" not in closed and 'name="_save"' not in closed
    edit = client.post(f"{LETTERS}{letter.pk}/change/", {"event_json": '{"event_id": "e-bad", "n": 1}'})
    assert edit.status_code == 403 and DeadLetter.objects.get(pk=letter.pk).raw_body == letter.raw_body
    assert "&quot;seven&quot;" in closed  # still shown, read-only
    again = client.post(f"{LETTERS}{letter.pk}/replay/", follow=True).content.decode()
    assert "already closed" in again and calls == []


def test_marketers_have_no_buttons(client, bad_letter):
    letter, _, calls = bad_letter
    login(client, "marketers")
    assert client.post(f"{LETTERS}{letter.pk}/replay/").status_code == 403
    assert client.post(f"{LETTERS}{letter.pk}/discard/").status_code == 403
    assert DeadLetter.objects.get(pk=letter.pk).status == "open" and calls == []


def test_age_buckets_filter_both_lists(client, push, test_topic):
    name, _, _ = test_topic
    push(name, {"event_id": "e-new"})
    push(name, {"event_id": "e-old"})
    InboxEvent.objects.filter(event_id="e-old").update(received_at=timezone.now() - timedelta(days=3))
    push(name, {"event_id": "l-new", "n": "x"})
    push(name, {"event_id": "l-old", "n": "x"})
    DeadLetter.objects.filter(event_id="l-old").update(received_at=timezone.now() - timedelta(hours=5))
    login(client, "operators")
    recent = client.get("/admin/inbox/inboxevent/", {"age": "1h"}).content.decode()
    days = client.get("/admin/inbox/inboxevent/", {"age": "7d"}).content.decode()
    assert "e-new" in recent and "e-old" not in recent
    assert "e-old" in days and "e-new" not in days and "3 days ago" in days
    hours = client.get(LETTERS, {"age": "24h"}).content.decode()
    assert "l-old" in hours and "l-new" not in hours and "5 h ago" in hours


@translation.override("en")
def test_age_label_uses_the_coarsest_whole_unit():
    now = timezone.now()
    assert age_label(now - timedelta(seconds=5), now) == "5 s ago"
    assert age_label(now - timedelta(minutes=59, seconds=59), now) == "59 min ago"
    assert age_label(now - timedelta(hours=3, minutes=40), now) == "3 h ago"
    assert age_label(now - timedelta(days=1, hours=2), now) == "1 day ago"
    assert age_label(now - timedelta(days=12), now) == "12 days ago"
    assert age_label(None, now) == "\u2014"
    with translation.override("ja"):
        assert age_label(now - timedelta(hours=3, minutes=40), now) == "3時間前"
