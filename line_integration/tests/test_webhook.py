"""POST /line/webhook and account linking: signature, dedupe, follow, accountLink, unfollow, standby, unlink."""

from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.conf import settings
from django.utils import timezone

from line_integration.models import LineLinkageUser, LineUser, LinkNonce, LinkToken, OutboundMessage, WebhookEvent
from line_integration.services import line_notify

from .conftest import event, line_user_id, signature, webhook_body

pytestmark = pytest.mark.django_db
USER = line_user_id("c-1")


def follow_and_get_token(post_webhook, sandbox, user=USER) -> str:
    assert post_webhook(webhook_body(event("follow", user))).status_code == 200
    return LinkToken.objects.filter(line_user_id=user).latest("id").link_token


def link(post_webhook, api_client, sandbox, customer_id="c-1", user=USER):
    token = follow_and_get_token(post_webhook, sandbox, user)
    response = api_client.post("/api/line/link-nonce", {"customer_id": customer_id, "link_token": token},
                               format="json")
    assert response.status_code == 200, response.content
    nonce = parse_qs(urlparse(response.json()["redirect_url"]).query)["nonce"][0]
    body = webhook_body(event("accountLink", user, link={"result": "ok", "nonce": nonce}))
    assert post_webhook(body).status_code == 200
    return nonce


def test_bad_signature_is_rejected_and_nothing_stored(line_sandbox, post_webhook):
    body = webhook_body(event("follow", USER))
    assert post_webhook(body, sig=signature(body, secret="other-secret")).status_code == 400
    assert post_webhook(body, sig="").status_code == 400
    assert post_webhook(body + b" ", sig=signature(body)).status_code == 400  # signature is over the raw body
    assert not WebhookEvent.objects.exists() and not LineUser.objects.exists()
    assert line_sandbox.control("stats")["requests"] == 0


def test_empty_events_is_a_connectivity_check(line_sandbox, post_webhook):
    assert post_webhook(webhook_body()).status_code == 200


def test_follow_issues_a_link_token_and_replies_with_the_link_url(line_sandbox, post_webhook):
    token = follow_and_get_token(post_webhook, line_sandbox)
    replies = line_sandbox.control("requests?endpoint=reply")["requests"]
    assert len(replies) == 1 and settings.LINE_LINK_URL.format(link_token=token) in replies[0]["body"]["messages"][0][
        "text"]
    assert LineUser.objects.get(line_user_id=USER).status == "following"


def test_redelivered_event_is_handled_once(line_sandbox, post_webhook):
    body = webhook_body(event("follow", USER, event_id="01EVENT"))
    assert post_webhook(body).status_code == 200 and post_webhook(body).status_code == 200
    assert line_sandbox.control("stats")["status_counts"] == {"link_token": {"200": 1}, "reply": {"200": 1}}
    assert WebhookEvent.objects.count() == 1


def test_account_link_completes_greets_and_switches_the_rich_menu(line_sandbox, post_webhook, api_client):
    nonce = link(post_webhook, api_client, line_sandbox)
    assert len(nonce) >= 22  # >= 128 bits from secrets, URL-safe
    user = LineUser.objects.get(line_user_id=USER)
    assert (user.customer_id, user.status, user.rich_menu_id) == ("c-1", "linked", settings.LINE_RICH_MENU_LINKED)
    assert line_sandbox.control(f"deliveries?to={USER}")["messages"] == [
        [{"type": "text", "text": settings.LINE_GREETING_TEXT}]]
    assert line_sandbox.control("richmenus") == {USER: settings.LINE_RICH_MENU_LINKED}
    assert LineLinkageUser.objects.get(line_id=USER).line_audience_status == "pending"
    assert OutboundMessage.objects.get(kind="greeting").status == "sent"


def test_nonce_is_single_use(line_sandbox, post_webhook, api_client):
    nonce = link(post_webhook, api_client, line_sandbox)
    other = line_user_id("intruder")
    post_webhook(webhook_body(event("accountLink", other, link={"result": "ok", "nonce": nonce})))
    assert not LineUser.objects.filter(line_user_id=other, status="linked").exists()
    assert WebhookEvent.objects.filter(line_user_id=other).get().outcome == "link refused: nonce already used"


def test_expired_or_foreign_nonce_does_not_link(line_sandbox, post_webhook, api_client):
    token = follow_and_get_token(post_webhook, line_sandbox)
    api_client.post("/api/line/link-nonce", {"customer_id": "c-1", "link_token": token}, format="json")
    nonce = LinkNonce.objects.get()
    intruder = line_user_id("intruder")
    post_webhook(webhook_body(event("accountLink", intruder, link={"result": "ok", "nonce": nonce.nonce})))
    LinkNonce.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    post_webhook(webhook_body(event("accountLink", USER, link={"result": "ok", "nonce": nonce.nonce})))
    post_webhook(webhook_body(event("accountLink", USER, link={"result": "failed", "nonce": "whatever-nonce"})))
    assert not LineUser.objects.filter(status="linked").exists()
    outcomes = WebhookEvent.objects.filter(event_type="accountLink").order_by("id").values_list("outcome", flat=True)
    assert list(outcomes) == ["link refused: nonce was issued for another LINE user", "link refused: nonce expired",
            "link failed at LINE: failed"]


def test_link_nonce_api_validates(line_sandbox, api_client, post_webhook):
    response = api_client.post("/api/line/link-nonce", {"customer_id": "c-1", "link_token": "nope"}, format="json")
    assert (response.status_code, response.json()["field"]) == (400, "link_token")
    assert api_client.post("/api/line/link-nonce", {"link_token": "x"}, format="json").json()["field"] == "customer_id"
    token = follow_and_get_token(post_webhook, line_sandbox)
    first = api_client.post("/api/line/link-nonce", {"customer_id": "c-1", "link_token": token}, format="json")
    again = api_client.post("/api/line/link-nonce", {"customer_id": "c-1", "link_token": token}, format="json")
    other = api_client.post("/api/line/link-nonce", {"customer_id": "c-2", "link_token": token}, format="json")
    assert first.json() == again.json() and other.status_code == 409


def test_unfollow_blocks_sending(line_sandbox, post_webhook, api_client, braze, text_template):
    link(post_webhook, api_client, line_sandbox)
    post_webhook(webhook_body(event("unfollow", USER)))
    assert LineUser.objects.get(line_user_id=USER).status == "blocked"
    response = braze({"user_id": "c-1", "dispatch_id": "d", "template": text_template.name})
    assert response.json() == {"status": "skipped", "reason": "blocked"}
    assert line_notify(customer_id="c-1", text="x", idempotency_key="k") is False


def test_standby_mode_sends_nothing(line_sandbox, post_webhook):
    post_webhook(webhook_body(event("follow", USER, mode="standby")))
    assert line_sandbox.control("stats")["requests"] == 0
    assert WebhookEvent.objects.get().outcome == "standby: nothing sent"
    assert not LineUser.objects.exists()


def test_unlink_switches_the_rich_menu_back(line_sandbox, post_webhook, api_client, django_capture_on_commit_callbacks):
    link(post_webhook, api_client, line_sandbox)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post("/api/line/unlink", {"customer_id": "c-1"}, format="json")
    assert response.status_code == 200
    assert line_sandbox.control("richmenus") == {}
    user = LineUser.objects.get(line_user_id=USER)
    assert (user.customer_id, user.status, user.rich_menu_id) == (None, "following", "")
    assert api_client.post("/api/line/unlink", {"customer_id": "c-1"}, format="json").status_code == 404


def test_rich_menu_failure_is_retried_by_the_sweep(line_sandbox, post_webhook, api_client):
    line_sandbox.control("faults", {"endpoints": ["richmenu_link"], "next": [500]})
    link(post_webhook, api_client, line_sandbox)
    assert LineUser.objects.get(line_user_id=USER).rich_menu_id == ""
    from line_integration.services import rich_menu_sync

    assert rich_menu_sync()["linked"] == 1
    assert line_sandbox.control("richmenus") == {USER: settings.LINE_RICH_MENU_LINKED}
