"""The LINE sandbox driven by a client we did not write: LINE's official SDK (line-bot-sdk v3, `linebot.v3`).

Every LINE test trusts the sandbox; here LINE's own client sends its own bodies to it and reads its answers
into its own models, so a sandbox that took what LINE refuses, or answered in shapes LINE does not, fails here.
"""

import json
import uuid

import pytest
from django.conf import settings
from linebot.v3 import audience
from linebot.v3.messaging import (
    ApiClient,
    ApiException,
    Configuration,
    FlexContainer,
    FlexMessage,
    MessagingApi,
    MulticastRequest,
    PushMessageRequest,
    TextMessage,
)

USER = "U" + "0123456789abcdef" * 2
OTHER = "U" + "fedcba9876543210" * 2
RICH_MENU = "richmenu-" + "0" * 31 + "1"
BUBBLE = {"type": "bubble", "body": {"type": "box", "layout": "vertical", "contents": [
    {"type": "text", "text": "Your item has shipped", "weight": "bold", "wrap": True},
    {"type": "button", "action": {"type": "uri", "label": "Track", "uri": "https://example.com/t/1"}}]}}


@pytest.fixture
def messaging(line_sandbox):
    configuration = Configuration(host=line_sandbox.url, access_token=settings.LINE_CHANNEL_ACCESS_TOKEN)
    with ApiClient(configuration) as client:
        yield MessagingApi(client)


@pytest.fixture
def audiences(line_sandbox):
    configuration = audience.Configuration(host=line_sandbox.url, access_token=settings.LINE_CHANNEL_ACCESS_TOKEN)
    with audience.ApiClient(configuration) as client:
        yield audience.ManageAudience(client)


def delivered(sandbox, to: str) -> list:
    return sandbox.control(f"deliveries?to={to}")["messages"]


def test_push_is_sent_once_and_a_repeated_retry_key_is_a_409(line_sandbox, messaging):
    key = str(uuid.uuid4())
    request = PushMessageRequest(to=USER, messages=[TextMessage(text="Hello from the SDK")])
    answer = messaging.push_message(request, x_line_retry_key=key)
    assert len(answer.sent_messages) == 1 and answer.sent_messages[0].id
    with pytest.raises(ApiException) as refused:
        messaging.push_message(request, x_line_retry_key=key)
    assert refused.value.status == 409
    assert json.loads(refused.value.body) == {"message": "The retry key is already accepted"}
    assert delivered(line_sandbox, USER) == [[{"type": "text", "text": "Hello from the SDK"}]]


def test_multicast_reaches_every_user(line_sandbox, messaging):
    messaging.multicast(MulticastRequest(to=[USER, OTHER], messages=[TextMessage(text="Sale")]),
                        x_line_retry_key=str(uuid.uuid4()))
    assert delivered(line_sandbox, USER) == delivered(line_sandbox, OTHER) == [[{"type": "text", "text": "Sale"}]]


def test_a_flex_message_built_by_the_sdk_is_accepted(line_sandbox, messaging):
    flex = FlexMessage(alt_text="Shipped", contents=FlexContainer.from_json(json.dumps(BUBBLE)))
    messaging.push_message(PushMessageRequest(to=USER, messages=[flex]))
    [[sent]] = delivered(line_sandbox, USER)
    assert sent["type"] == "flex" and sent["altText"] == "Shipped"
    assert sent["contents"]["body"]["contents"][1]["action"]["uri"] == "https://example.com/t/1"


def test_rich_menu_link_and_unlink(line_sandbox, messaging):
    messaging.link_rich_menu_id_to_user(USER, RICH_MENU)
    assert line_sandbox.control("richmenus") == {USER: RICH_MENU}
    messaging.unlink_rich_menu_id_from_user(USER)
    assert line_sandbox.control("richmenus") == {}


def test_issue_link_token(line_sandbox, messaging):
    token = messaging.issue_link_token(USER).link_token
    assert line_sandbox.control("link_tokens")[token]["user_id"] == USER


def test_audience_create_add_and_read_back(line_sandbox, audiences):
    created = audiences.create_audience_group(audience.CreateAudienceGroupRequest(
        description="sdk group", is_ifa_audience=False, upload_description="first",
        audiences=[audience.Audience(id=USER)]))
    assert created.audience_group_id and created.description == "sdk group"
    audiences.add_audience_to_audience_group(audience.AddAudienceToAudienceGroupRequest(
        audience_group_id=created.audience_group_id, upload_description="second",
        audiences=[audience.Audience(id=OTHER)]))
    line_sandbox.sandbox.clock.advance(1.1)  # the jobs' time (the sandbox's audience_job_seconds)
    data = audiences.get_audience_data(created.audience_group_id)
    assert data.audience_group.audience_count == 2
    assert sorted(job.description for job in data.jobs) == ["first", "second"]


def test_a_5001_character_text_is_lines_400(line_sandbox, messaging):
    with pytest.raises(ApiException) as refused:
        messaging.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="x" * 5001)]))
    assert refused.value.status == 400
    assert json.loads(refused.value.body) == {"message": "The request body has 1 error(s)", "details": [
        {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]}
    messaging.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="x" * 5000)]))
    assert len(delivered(line_sandbox, USER)) == 1


def test_text_length_counts_utf16_code_units_as_line_does(line_sandbox, messaging):
    # 2,500 apples are 2,500 code points but 5,000 UTF-16 units: LINE's limit exactly; one more character is over
    messaging.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="\U0001F34E" * 2500)]))
    with pytest.raises(ApiException) as refused:
        messaging.push_message(PushMessageRequest(to=USER, messages=[TextMessage(text="\U0001F34E" * 2500 + "x")]))
    assert json.loads(refused.value.body)["details"] == [
        {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]
    assert len(delivered(line_sandbox, USER)) == 1


def test_a_bad_recipient_is_lines_400(line_sandbox, messaging):
    with pytest.raises(ApiException) as refused:
        messaging.push_message(PushMessageRequest(to="not-a-user", messages=[TextMessage(text="hi")]))
    assert refused.value.status == 400
    assert json.loads(refused.value.body) == {
        "message": "The property, 'to', in the request body is invalid (line: -, column: -)"}
    with pytest.raises(ApiException) as refused:
        messaging.issue_link_token("not-a-user")
    assert refused.value.status == 400
    assert line_sandbox.control("stats")["deliveries"] == 0


def test_an_audience_of_bad_ids_is_lines_400(line_sandbox, audiences):
    with pytest.raises(audience.ApiException) as refused:
        audiences.create_audience_group(audience.CreateAudienceGroupRequest(
            description="bad ids", audiences=[audience.Audience(id="not-a-user")]))
    assert refused.value.status == 400
    assert json.loads(refused.value.body)["details"] == [
        {"message": "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT", "property": "audiences[0].id"}]
