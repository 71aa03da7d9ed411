"""The LINE admin: who sees LINE IDs, who may send test messages or run the audience job, the campaign report."""

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone

from line_integration.models import (
    AudienceGroup,
    AudienceJob,
    LineLinkageUser,
    LineRequest,
    LineUser,
    OutboundMessage,
    WebhookEvent,
)
from line_integration.services import message_enqueue, outbound_plan

from .conftest import line_user_id

pytestmark = pytest.mark.django_db
ROLES = [("marketers", False), ("operators", True)]


@pytest.fixture
def login(client):
    """login("operators" | "marketers") -> the test client, logged in as a staff user of that group."""
    from mercari_ops.common.roles import role_permissions_sync

    role_permissions_sync()

    def _login(role: str, http_client: Client = client) -> Client:
        user = User.objects.create(username=f"{role}-{User.objects.count()}", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        http_client.force_login(user)
        return http_client

    return _login


def assert_raw_shown(client, urls: list[str], raw: str, sees_raw: bool) -> None:
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, url
        assert (raw in response.content.decode()) is sees_raw, url


# ---- masking --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("role", "sees_raw"), ROLES)
def test_linkage_users_mask_line_ids_for_marketers(login, link_customers, role, sees_raw):
    client = login(role)
    link_customers(["c-1"])
    assert_raw_shown(client, ["/admin/line_integration/linelinkageuser/",
                              f"/admin/line_integration/linelinkageuser/{LineLinkageUser.objects.get().pk}/change/",
                              "/admin/line_integration/lineuser/"], line_user_id("c-1"), sees_raw)


@pytest.mark.parametrize(("role", "sees_raw"), ROLES)
def test_outbound_messages_mask_line_ids_for_marketers(login, link_customers, text_template, role, sees_raw):
    client = login(role)
    link_customers(["c-1"])
    message_enqueue(dispatch_id="d-1", user_id="c-1", template=text_template.name, params={"search_id": "s"},
                    campaign_id="cmp")
    message = OutboundMessage.objects.get()
    assert message.line_user_id == line_user_id("c-1")
    assert_raw_shown(client, ["/admin/line_integration/outboundmessage/",
                              f"/admin/line_integration/outboundmessage/{message.pk}/change/"],
                     line_user_id("c-1"), sees_raw)


@pytest.mark.parametrize(("role", "sees_raw"), ROLES)
def test_webhook_events_mask_line_ids_for_marketers(login, role, sees_raw):
    client = login(role)
    raw = "U" + "a1" * 16
    event = WebhookEvent.objects.create(webhook_event_id="01HEVENT", event_type="follow", line_user_id=raw,
                                        outcome="link token requested")
    assert_raw_shown(client, ["/admin/line_integration/webhookevent/",
                              f"/admin/line_integration/webhookevent/{event.pk}/change/"], raw, sees_raw)
    assert "link token requested" in client.get("/admin/line_integration/webhookevent/").content.decode()


@pytest.mark.parametrize(("role", "sees_body"), ROLES)
def test_line_request_body_is_hidden_from_marketers(login, link_customers, text_template, role, sees_body):
    client = login(role)
    link_customers(["c-1"])
    message_enqueue(dispatch_id="d-1", user_id="c-1", template=text_template.name, params={"search_id": "s-42"})
    outbound_plan()
    request = LineRequest.objects.get()
    assert request.body["to"] == line_user_id("c-1")
    content = client.get(f"/admin/line_integration/linerequest/{request.pk}/change/").content.decode()
    assert (line_user_id("c-1") in content) is sees_body
    assert ("New items for your search s-42" in content) is sees_body
    assert str(request.retry_key) in content  # the page itself is shown to both


# ---- send test message ----------------------------------------------------------------------------------
def test_operator_sends_a_test_message(login, link_customers, line_sandbox, drain):
    client = login("operators")
    linked = link_customers(["c-1"])
    user = LineUser.objects.get(customer_id="c-1")
    changelist = client.get("/admin/line_integration/lineuser/")
    assert "send_test_message" in dict(changelist.context["action_form"].fields["action"].choices)
    response = client.post("/admin/line_integration/lineuser/", {"action": "send_test_message",
                                                                 "_selected_action": [user.pk]}, follow=True)
    assert "1 test message queued" in [str(m) for m in response.context["messages"]][0]
    assert OutboundMessage.objects.get().kind == "test"
    drain()
    assert line_sandbox.control(f"deliveries?to={linked['c-1']}")["messages"] == [
        [{"type": "text", "text": "メルカリ Ops からのテストメッセージです。"}]]  # customers read Japanese


def test_marketer_has_no_send_test_message_action(login, link_customers):
    client = login("marketers")
    link_customers(["c-1"])
    user = LineUser.objects.get(customer_id="c-1")
    changelist = client.get("/admin/line_integration/lineuser/")
    assert changelist.status_code == 200
    action_form = changelist.context.get("action_form")
    assert action_form is None or "send_test_message" not in dict(action_form.fields["action"].choices)
    response = client.post("/admin/line_integration/lineuser/", {"action": "send_test_message",
                                                                 "_selected_action": [user.pk]})
    assert response.status_code in (200, 302)
    assert not OutboundMessage.objects.exists()


# ---- run the audience job now ---------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["audiencejob", "audiencegroup"])
def test_operator_runs_the_audience_job_on_a_fresh_install(login, link_customers, line_sandbox, eager_celery, model):
    # given: linked users but no audience group or job yet (nothing to select on the changelist)
    client = login("operators")
    link_customers(["c-1", "c-2"])
    assert not AudienceGroup.objects.exists() and not AudienceJob.objects.exists()
    changelist = client.get(f"/admin/line_integration/{model}/")
    assert f"/admin/line_integration/{model}/run-now/" in changelist.content.decode()
    # when
    response = client.post(f"/admin/line_integration/{model}/run-now/", follow=True)
    # then: the job ran (group created, both users sent to LINE) and the operator is told
    assert response.redirect_chain == [(f"/admin/line_integration/{model}/", 302)]
    assert [str(m) for m in response.context["messages"]] == [
        "Audience job queued (it runs under its lock; see Audience jobs)."]
    assert AudienceGroup.objects.filter(active=True).count() == 1
    assert AudienceJob.objects.get().user_count == 2
    assert line_sandbox.control("stats")["status_counts"]["audience_add"] == {"202": 1}


def test_run_now_is_post_only_and_csrf_protected(login, line_sandbox, eager_celery):
    csrf_client = login("operators", Client(enforce_csrf_checks=True))
    assert csrf_client.get("/admin/line_integration/audiencejob/run-now/").status_code == 405
    assert csrf_client.post("/admin/line_integration/audiencejob/run-now/").status_code == 403
    assert line_sandbox.control("stats")["requests"] == 0


def test_marketer_gets_no_run_now_button_and_403(login, link_customers, line_sandbox, eager_celery):
    client = login("marketers")
    link_customers(["c-1"])
    for model in ("audiencejob", "audiencegroup"):
        changelist = client.get(f"/admin/line_integration/{model}/")
        assert changelist.status_code == 200 and "run-now" not in changelist.content.decode()
        assert client.post(f"/admin/line_integration/{model}/run-now/").status_code == 403
    assert line_sandbox.control("stats")["requests"] == 0
    assert not AudienceGroup.objects.exists()


# ---- deliveries per Braze campaign ----------------------------------------------------------------------
def outbound(campaign_id: str, status: str, n: int, kind: str = "braze") -> None:
    now = timezone.now()
    start = OutboundMessage.objects.count()
    OutboundMessage.objects.bulk_create([
        OutboundMessage(dispatch_id=f"d-{start + i}", user_id=f"c-{start + i}", campaign_id=campaign_id, kind=kind,
                        status=status, reason="template 'x' no longer exists" if status == "failed" else "",
                        created_at=now) for i in range(n)])


@pytest.fixture
def campaign_messages():
    outbound("spring", "queued", 3)
    outbound("spring", "planned", 2)
    outbound("spring", "sent", 5)
    outbound("spring", "failed", 1)
    outbound("spring", "skipped", 4)
    outbound("autumn", "sent", 7)
    outbound("autumn", "skipped", 2)
    outbound("", "failed", 1)
    outbound("", "sent", 9, kind="notify")  # not Braze: not in the report
    outbound("", "sent", 1, kind="test")
    return [
        {"campaign_id": "", "queued": 0, "sent": 0, "failed": 1, "skipped": 0, "total": 1},
        {"campaign_id": "autumn", "queued": 0, "sent": 7, "failed": 0, "skipped": 2, "total": 9},
        {"campaign_id": "spring", "queued": 5, "sent": 5, "failed": 1, "skipped": 4, "total": 15},
    ]


def test_campaign_delivery_counts(campaign_messages):
    from line_integration.selectors import campaign_delivery_counts

    assert campaign_delivery_counts() == campaign_messages


@pytest.mark.parametrize("role", ["marketers", "operators"])
def test_campaign_report_page_shows_the_counts(login, campaign_messages, role):
    client = login(role)
    response = client.get("/admin/line_integration/campaigndelivery/")
    assert response.status_code == 200
    assert list(response.context["rows"]) == campaign_messages
    content = response.content.decode()
    for row in campaign_messages:
        cells = "".join(f"<td>{row[k]}</td>" for k in ("queued", "sent", "failed", "skipped", "total"))
        assert cells in content, row
    assert content.count("template &#x27;x&#x27; no longer exists") == 2  # the latest failures, with reasons
