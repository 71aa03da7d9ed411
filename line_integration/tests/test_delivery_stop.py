"""Nothing more reaches a LINE user who unfollowed (blocked) or was unlinked, even if Braze queued it before."""

import pytest

from line_integration.models import LineRequest, OutboundMessage
from line_integration.services import line_unlink, outbound_plan, requests_send_due

from .conftest import event, webhook_body
from .test_delivery import enqueue

pytestmark = pytest.mark.django_db


def outcome(customer_id: str) -> set[tuple[str, str]]:
    return set(OutboundMessage.objects.filter(user_id=customer_id).values_list("status", "reason"))


def delivered(sandbox, linked: dict) -> dict:
    counts = sandbox.control("deliveries")["counts"]
    return {customer_id: counts.get(line_id, 0) for customer_id, line_id in linked.items()}


def test_queued_messages_are_skipped_after_unfollow_or_unlink(line_sandbox, text_template, link_customers,
                                                               post_webhook, drain):
    # given: personal pushes and one identical multicast queued for three linked customers
    linked = link_customers(["c-blocked", "c-unlinked", "c-linked"])
    enqueue(linked, personal=True, dispatch="personal")
    enqueue(linked, personal=False, dispatch="same")
    # when: one unfollows, one is unlinked by the marketplace, then the sender runs
    post_webhook(webhook_body(event("unfollow", linked["c-blocked"])))
    line_unlink(customer_id="c-unlinked")
    drain()
    # then
    assert delivered(line_sandbox, linked) == {"c-blocked": 0, "c-unlinked": 0, "c-linked": 2}
    assert outcome("c-blocked") == {("skipped", "blocked")}
    assert outcome("c-unlinked") == {("skipped", "not_linked")}
    assert outcome("c-linked") == {("sent", "")}
    assert not OutboundMessage.objects.filter(status="skipped").exclude(request=None).exists()


def test_planning_checks_the_account_in_the_claiming_query_not_per_message(
        line_sandbox, text_template, link_customers, django_assert_max_num_queries):
    linked = link_customers([f"c-{i}" for i in range(40)])
    enqueue(linked, personal=True)
    for customer_id in list(linked)[:20]:
        line_unlink(customer_id=customer_id)
    with django_assert_max_num_queries(8):  # claim (with the account check), templates, requests, one update
        assert outbound_plan() == 40
    assert OutboundMessage.objects.filter(status="skipped", reason="not_linked").count() == 20
    assert OutboundMessage.objects.filter(status="planned").count() == 20


def test_planned_but_never_sent_requests_drop_the_user(line_sandbox, text_template, link_customers, post_webhook,
                                                       drain):
    # given: messages already planned into requests (a push each, and one multicast to all three)
    linked = link_customers(["c-blocked", "c-unlinked", "c-linked"])
    enqueue({"c-blocked": linked["c-blocked"]}, personal=True, dispatch="personal")
    enqueue(linked, personal=False, dispatch="same")
    outbound_plan()
    push = LineRequest.objects.get(kind="push")
    multicast = LineRequest.objects.get(kind="multicast")
    # when
    post_webhook(webhook_body(event("unfollow", linked["c-blocked"])))
    line_unlink(customer_id="c-unlinked")
    drain()
    # then: LINE never saw those requests, so the push is cancelled and the multicast goes to the rest only
    assert delivered(line_sandbox, linked) == {"c-blocked": 0, "c-unlinked": 0, "c-linked": 1}
    push.refresh_from_db()
    multicast.refresh_from_db()
    assert (push.status, push.attempts, push.last_error) == ("cancelled", 0, "cancelled: recipient blocked")
    assert (multicast.status, multicast.body["to"], multicast.recipient_count) == ("sent", [linked["c-linked"]], 1)
    assert outcome("c-blocked") == {("skipped", "blocked")}
    assert outcome("c-unlinked") == {("skipped", "not_linked")}
    assert line_sandbox.control("stats")["status_counts"] == {"multicast": {"200": 1}}


def test_a_request_line_may_already_have_is_retried_unchanged(line_sandbox, text_template, link_customers,
                                                              post_webhook, drain):
    # given: a push that was sent once and timed out after LINE took it (the user may have it already)
    linked = link_customers(["c-1"])
    enqueue(linked, personal=True)
    outbound_plan()
    line_sandbox.control("faults", {"next": ["500+"]})
    assert requests_send_due()["retry"] == 1
    # when
    post_webhook(webhook_body(event("unfollow", linked["c-1"])))
    drain()
    # then: the identical retry is answered 409 (already accepted): one delivery, recorded as sent
    assert delivered(line_sandbox, linked) == {"c-1": 1}
    assert outcome("c-1") == {("sent", "")}
    assert LineRequest.objects.get().last_status == 409
