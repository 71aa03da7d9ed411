"""The client maps LINE's answers to typed errors and never retries on its own."""

import uuid

import pytest

from line_integration.clients import (
    LineBadRequest,
    LineClient,
    LineConflict,
    LineRateLimited,
    LineServerError,
    LineTimeout,
)

USER = "U" + "b" * 32
TEXT = [{"type": "text", "text": "hello"}]


@pytest.fixture
def client(line_sandbox):
    return LineClient(base_url=line_sandbox.url, read_timeout=0.5)


@pytest.mark.parametrize(("fault", "error"), [(429, LineRateLimited), (500, LineServerError),
                                              (503, LineServerError), (400, LineBadRequest)])
def test_status_codes_become_typed_errors_after_one_request(line_sandbox, client, fault, error):
    line_sandbox.control("faults", {"next": [fault]})
    with pytest.raises(error) as caught:
        client.push(to=USER, messages=TEXT, retry_key=str(uuid.uuid4()))
    assert caught.value.status == fault
    assert line_sandbox.control("stats")["requests"] == 1  # no hidden retry


def test_duplicate_retry_key_is_a_conflict_carrying_the_accepted_request_id(line_sandbox, client):
    key = str(uuid.uuid4())
    first = client.push(to=USER, messages=TEXT, retry_key=key)
    with pytest.raises(LineConflict) as caught:
        client.push(to=USER, messages=TEXT, retry_key=key)
    assert caught.value.accepted_request_id == first.request_id


def test_read_timeout_is_line_timeout(line_sandbox, client):
    line_sandbox.control("faults", {"next": ["timeout"], "timeout_seconds": 1.5})
    with pytest.raises(LineTimeout):
        client.multicast(to=[USER, "U" + "c" * 32], messages=TEXT, retry_key=str(uuid.uuid4()))


def test_connection_refused_is_line_timeout(settings):
    with pytest.raises(LineTimeout):
        LineClient(base_url="http://127.0.0.1:9", connect_timeout=0.5).link_token_issue(user_id=USER)


def test_audience_add_uses_the_long_read_timeout(settings):
    client = LineClient(base_url="http://127.0.0.1:9")
    assert client.audience_read_timeout == 30.0 and client.read_timeout == settings.LINE_READ_TIMEOUT


def test_every_request_the_client_builds_is_valid_for_line(line_sandbox, client):
    client.push(to=USER, messages=TEXT, retry_key=str(uuid.uuid4()))
    client.multicast(to=[USER], messages=TEXT, retry_key=str(uuid.uuid4()))
    client.reply(reply_token="r" * 32, messages=TEXT)
    client.rich_menu_link(user_id=USER, rich_menu_id="richmenu-" + "0" * 32)
    client.rich_menu_unlink(user_id=USER)
    assert client.link_token_issue(user_id=USER)
    group = client.audience_create(description="g", audiences=[USER], upload_description="first")
    client.audience_add(audience_group_id=group["audienceGroupId"], audiences=[USER], upload_description="second")
    assert client.audience_get(audience_group_id=group["audienceGroupId"])["jobs"]
    counts = line_sandbox.control("stats")["status_counts"]
    assert all(status in ("200", "202") for per in counts.values() for status in per), counts


def test_push_connection_refused_is_line_timeout(settings):
    with pytest.raises(LineTimeout):
        LineClient(base_url="http://127.0.0.1:9", connect_timeout=0.5).push(to=USER, messages=TEXT,
                                                                            retry_key=str(uuid.uuid4()))


def test_pushes_share_one_pooled_connection_and_carry_the_session_headers(line_sandbox, client):
    # given a sandbox that checks the bearer token (401 without it) and the spec (400 on a bad body)
    keys = [str(uuid.uuid4()) for _ in range(5)]
    # when
    for key in keys:
        client.push(to=USER, messages=TEXT, retry_key=key)
    # then
    pools = client.session.get_adapter(line_sandbox.url).poolmanager.pools
    assert [pools[key].num_connections for key in pools.keys()] == [1]
    recent = line_sandbox.control("requests")["requests"][-5:]
    assert [r["retry_key"] for r in recent] == keys
    assert all(r["status"] == 200 and r["body"] == {"to": USER, "messages": TEXT} for r in recent)


def test_a_bad_push_carries_lines_details_and_request_headers_on_the_fast_path(line_sandbox, client):
    # given a push LINE refuses (six messages: the spec allows five)
    key = str(uuid.uuid4())
    # when
    with pytest.raises(LineBadRequest) as caught:
        client.push(to=USER, messages=TEXT * 6, retry_key=key)
    # then the error names what LINE named, and the request carried the retry key and the JSON content type
    assert caught.value.status == 400
    assert "messages" in caught.value.reason, caught.value.reason
    assert caught.value.headers.get("x-line-request-id")
    last = line_sandbox.control("requests")["requests"][-1]
    assert last["retry_key"] == key and last["status"] == 400
