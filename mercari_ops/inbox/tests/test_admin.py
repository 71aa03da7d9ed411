import pytest
from django.contrib.auth.models import Group, User

from conftest import push_body
from mercari_ops.inbox.models import DeadLetter, InboxEvent

pytestmark = pytest.mark.django_db


def staff(group: str) -> User:
    user = User.objects.create_user(f"{group}-user", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    return user


def test_operator_sees_dashboard_filters_and_replays_a_fixed_dead_letter(client, push, test_topic):
    name, calls, _ = test_topic
    push(name, body=push_body({"n": 1}))
    letter = DeadLetter.objects.get()
    client.force_login(staff("operators"))
    index = client.get("/admin/")
    assert b"Open dead letters" in index.content
    listing = client.get("/admin/inbox/deadletter/?status__exact=open")
    assert listing.status_code == 200 and b"event_id is required" in listing.content
    letter.raw_body = push_body({"event_id": "fixed", "n": 1}).decode()
    letter.save()
    response = client.post("/admin/inbox/deadletter/", {"action": "replay", "_selected_action": [letter.pk]},
                           follow=True)
    assert b"Replayed 1 dead letter" in response.content
    assert calls == [{"event_id": "fixed", "n": 1}]
    assert InboxEvent.objects.get(event_id="fixed").status == "processed"
    detail = client.get(f"/admin/inbox/inboxevent/{InboxEvent.objects.get().pk}/change/")
    assert detail.status_code == 200 and b"fixed" in detail.content


def test_marketer_cannot_open_the_inbox(client):
    client.force_login(staff("marketers"))
    assert client.get("/admin/inbox/inboxevent/").status_code == 403
    assert b"Open dead letters" not in client.get("/admin/").content


def test_celery_is_configured_for_at_least_once_work():
    from django.conf import settings

    from mercari_ops.celery import app

    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert {q.name for q in app.conf.task_queues} == {"events", "line", "settlement", "default"}
    assert app.conf.task_time_limit > app.conf.task_soft_time_limit
    if settings.CELERY_BROKER_URL.startswith("redis"):
        assert app.conf.broker_transport_options["visibility_timeout"] > app.conf.task_time_limit
