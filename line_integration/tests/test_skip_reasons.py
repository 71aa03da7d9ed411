"""The skip rule (a message goes out only while its LINE account is linked to its customer) gives the same
answer on every path that decides it: accepting one message, a Braze group, planning, the greeting's send-now."""

import pytest

from line_integration.models import LineUser, OutboundMessage
from line_integration.services import message_enqueue, outbound_plan
from line_integration.services.braze import braze_enqueue_group
from line_integration.services.delivery import message_send_now

pytestmark = pytest.mark.django_db

# The customer's LINE account when the path decides -> the reason it decides ('' = the message goes out).
EXPECTED = {
    "linked": "",
    "blocked": "blocked",
    "unlinked": "not_linked",  # the account follows, no customer
    "linked_to_another_customer": "not_linked",
    "no_account": "not_linked",
}


def _account_set(customer_id: str, state: str) -> None:
    """Put the LINE account that was (or would be) the customer's into `state`."""
    line_user_id = "U" + customer_id.encode().hex().ljust(32, "0")[:32]
    fields = {
        "linked": {"customer_id": customer_id, "status": LineUser.Status.LINKED},
        "blocked": {"customer_id": customer_id, "status": LineUser.Status.BLOCKED},
        "unlinked": {"customer_id": None, "status": LineUser.Status.FOLLOWING},
        "linked_to_another_customer": {"customer_id": f"other-{customer_id}", "status": LineUser.Status.LINKED},
    }
    if state == "no_account":
        LineUser.objects.filter(line_user_id=line_user_id).delete()
    else:
        LineUser.objects.update_or_create(line_user_id=line_user_id, defaults=fields[state])


def _decided(message: OutboundMessage) -> str:
    message.refresh_from_db()
    assert (message.status == OutboundMessage.Status.SKIPPED) == bool(message.reason), (message.status, message.reason)
    return message.reason if message.status == OutboundMessage.Status.SKIPPED else ""


def _queued_while_linked(customer_id: str) -> OutboundMessage:
    _account_set(customer_id, "linked")
    assert message_enqueue(dispatch_id="d", user_id=customer_id, params={"messages": [
        {"type": "text", "text": "hi"}]}, kind=OutboundMessage.Kind.NOTIFY) == ("queued", "")
    return OutboundMessage.objects.get(dispatch_id="d", user_id=customer_id)


def _accept_one(customer_id: str, state: str) -> str:
    _account_set(customer_id, state)
    status, reason = message_enqueue(dispatch_id="d", user_id=customer_id, template="t", params={})
    assert _decided(OutboundMessage.objects.get(dispatch_id="d", user_id=customer_id)) == reason
    return reason


def _accept_group(customer_id: str, state: str) -> str:
    _account_set(customer_id, state)
    [answer] = braze_enqueue_group([{"dispatch_id": "d", "user_id": customer_id, "template": "t", "params": {}}])
    reason = _decided(OutboundMessage.objects.get(dispatch_id="d", user_id=customer_id))
    assert answer == ({"status": "skipped", "reason": reason} if reason else {"status": "queued"})
    return reason


def _plan(customer_id: str, state: str) -> str:
    message = _queued_while_linked(customer_id)
    _account_set(customer_id, state)
    assert outbound_plan() == 1
    return _decided(message)


def _send_now(customer_id: str, state: str) -> str:
    message = _queued_while_linked(customer_id)
    _account_set(customer_id, state)
    message_send_now(message_id=message.id)
    return _decided(message)


@pytest.mark.parametrize("path", [_accept_one, _accept_group, _plan, _send_now],
                         ids=["accept_one", "accept_group", "plan", "send_now"])
def test_each_skip_reason_is_the_same_on_every_path(line_sandbox, path):
    decided = {state: path(f"c-{state}", state) for state in EXPECTED}
    assert decided == EXPECTED
