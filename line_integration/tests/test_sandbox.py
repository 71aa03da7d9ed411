"""The LINE sandbox behaves like LINE: spec validation, limits, retry keys, audience jobs, faults, records."""

import json
import uuid

import pytest
import requests

USER = "U" + "a" * 32
AUTH = {"Authorization": "Bearer sandbox-token"}


def push(sandbox, body=None, **headers):
    return requests.post(f"{sandbox.url}/v2/bot/message/push", json=body or {
        "to": USER, "messages": [{"type": "text", "text": "hi"}]}, headers={**AUTH, **headers}, timeout=5)


def test_bad_body_is_a_line_400_naming_the_property(line_sandbox):
    response = push(line_sandbox, {"to": USER, "messages": [{"type": "text"}]})
    assert response.status_code == 400
    assert response.json() == {"message": "The request body has 1 error(s)",
                               "details": [{"message": "must be specified", "property": "messages[0].text"}]}


def test_unknown_message_type_and_too_many_multicast_recipients_are_refused(line_sandbox):
    assert push(line_sandbox, {"to": USER, "messages": [{"type": "bogus"}]}).status_code == 400
    response = requests.post(f"{line_sandbox.url}/v2/bot/message/multicast", headers=AUTH, timeout=5, json={
        "to": [USER] * 501, "messages": [{"type": "text", "text": "x"}]})
    assert response.status_code == 400 and response.json()["details"][0]["property"] == "to"


def test_wrong_token_is_401(line_sandbox):
    response = requests.post(f"{line_sandbox.url}/v2/bot/message/push", headers={"Authorization": "Bearer nope"},
                             json={"to": USER, "messages": [{"type": "text", "text": "x"}]}, timeout=5)
    assert response.status_code == 401


def test_push_rate_limit_answers_429(line_sandbox):
    line_sandbox.control("limits", {"push": [5, 1.0]})
    statuses = [push(line_sandbox).status_code for _ in range(8)]
    assert statuses.count(200) == 5 and statuses.count(429) == 3


def test_retry_key_duplicate_is_409_with_the_accepted_request_id(line_sandbox):
    key = str(uuid.uuid4())
    first = push(line_sandbox, **{"X-Line-Retry-Key": key})
    second = push(line_sandbox, **{"X-Line-Retry-Key": key})
    assert first.status_code == 200 and second.status_code == 409
    assert second.json() == {"message": "The retry key is already accepted"}
    assert second.headers["x-line-accepted-request-id"] == first.headers["x-line-request-id"]
    assert line_sandbox.control(f"deliveries?to={USER}")["count"] == 1


def test_retry_key_is_refused_where_line_does_not_support_it(line_sandbox):
    response = requests.post(f"{line_sandbox.url}/v2/bot/user/{USER}/linkToken",
                             headers={**AUTH, "X-Line-Retry-Key": str(uuid.uuid4())}, timeout=5)
    assert response.status_code == 400


def test_scripted_faults_and_records(line_sandbox):
    line_sandbox.control("faults", {"next": [500, 429, "500+"]})
    statuses = [push(line_sandbox).status_code for _ in range(4)]
    assert statuses == [500, 429, 500, 200]
    records = line_sandbox.control("requests?endpoint=push")["requests"]
    assert [r["accepted"] for r in records] == [False, False, True, True]
    assert line_sandbox.control(f"deliveries?to={USER}")["count"] == 2


def test_timeout_fault_holds_the_answer(line_sandbox):
    line_sandbox.control("faults", {"next": ["timeout"], "timeout_seconds": 2})
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            f"{line_sandbox.url}/v2/bot/message/push", headers=AUTH, timeout=(1, 0.3),
            json={"to": USER, "messages": [{"type": "text", "text": "x"}]})
    assert push(line_sandbox).status_code == 200  # other connections are not blocked


def _add(sandbox, group_id, n):
    return requests.put(f"{sandbox.url}/v2/bot/audienceGroup/upload", headers=AUTH, timeout=5, json={
        "audienceGroupId": group_id, "uploadDescription": f"job-{n}", "audiences": [{"id": f"U{n:032x}"}]})


def test_audience_jobs_run_async_and_an_11th_in_progress_is_refused(line_sandbox):
    line_sandbox.control("audience", {"job_seconds": 1.0})
    created = requests.post(f"{line_sandbox.url}/v2/bot/audienceGroup/upload", headers=AUTH, timeout=5,
                            json={"description": "test group", "audiences": []})
    assert created.status_code == 202
    group_id = created.json()["audienceGroupId"]
    assert [_add(line_sandbox, group_id, n).status_code for n in range(11)] == [202] * 10 + [429]
    jobs = requests.get(f"{line_sandbox.url}/v2/bot/audienceGroup/{group_id}", headers=AUTH, timeout=5).json()["jobs"]
    assert {j["jobStatus"] for j in jobs} == {"QUEUED"}
    line_sandbox.sandbox.clock.advance(1.1)  # LINE took the jobs' time (job_seconds)
    data = requests.get(f"{line_sandbox.url}/v2/bot/audienceGroup/{group_id}", headers=AUTH, timeout=5).json()
    assert {j["jobStatus"] for j in data["jobs"]} == {"FINISHED"} and data["audienceGroup"]["audienceCount"] == 10
    state = line_sandbox.control("audience")
    assert state["max_jobs_in_progress"] == 10 and state["jobs_refused"] == 1


def test_audience_calls_are_limited_to_60_a_minute(line_sandbox):
    line_sandbox.control("limits", {"audience_get": [3, 60.0]})
    statuses = [requests.get(f"{line_sandbox.url}/v2/bot/audienceGroup/1", headers=AUTH, timeout=5).status_code
                for _ in range(4)]
    assert statuses == [400, 400, 400, 429]  # unknown group is a 400; the 4th call is over the budget


# ---- LINE refuses it, so the sandbox refuses it (issue 16, point 10) ----------------------------------------

def text_push(sandbox, text, to=USER):
    return push(sandbox, {"to": to, "messages": [{"type": "text", "text": text}]})


def test_a_text_over_5000_characters_is_refused_as_line_refuses_it(line_sandbox):
    response = text_push(line_sandbox, "x" * 5001)
    assert response.status_code == 400
    assert response.json() == {"message": "The request body has 1 error(s)", "details": [
        {"message": "Length must be between 0 and 5000", "property": "messages[0].text"}]}
    assert text_push(line_sandbox, "x" * 5000).status_code == 200
    assert line_sandbox.control(f"deliveries?to={USER}")["count"] == 1


def test_an_empty_text_is_refused_with_lines_body(line_sandbox):
    response = text_push(line_sandbox, "")
    assert response.status_code == 400
    assert response.json() == {"message": "The request body has 1 error(s)",
                               "details": [{"message": "May not be empty", "property": "messages[0].text"}]}
    assert line_sandbox.control(f"deliveries?to={USER}")["count"] == 0


@pytest.mark.parametrize("to", ["not-a-user", "", "U" + "A" * 32, "U" + "a" * 31, "U" + "a" * 33, " " + USER])
def test_a_push_to_something_that_is_no_user_id_is_refused(line_sandbox, to):
    response = text_push(line_sandbox, "hi", to=to)
    assert response.status_code == 400
    assert response.json() == {"message": "The property, 'to', in the request body is invalid (line: -, column: -)"}
    assert line_sandbox.control("stats")["deliveries"] == 0


def test_groups_and_rooms_can_be_pushed_to(line_sandbox):
    assert text_push(line_sandbox, "hi", to="C" + "1" * 32).status_code == 200
    assert text_push(line_sandbox, "hi", to="R" + "2" * 32).status_code == 200


def test_a_multicast_with_one_bad_user_id_is_refused_whole(line_sandbox):
    response = requests.post(f"{line_sandbox.url}/v2/bot/message/multicast", headers=AUTH, timeout=5, json={
        "to": [USER, "C" + "1" * 32], "messages": [{"type": "text", "text": "x"}]})
    assert response.status_code == 400
    assert response.json() == {"message": "The property, 'to', in the request body is invalid (line: -, column: -)"}
    assert line_sandbox.control("stats")["deliveries"] == 0


def test_details_are_lines_wording_never_python_reprs(line_sandbox):
    missing = push(line_sandbox, {"to": USER})
    assert missing.json() == {"message": "The request body has 1 error(s)",
                              "details": [{"message": "must be specified", "property": "messages"}]}
    too_many = push(line_sandbox, {"to": USER, "messages": [{"type": "text", "text": "x"}] * 6})
    assert too_many.json()["details"] == [{"message": "Size must be between 1 and 5", "property": "messages"}]
    unknown = push(line_sandbox, {"to": USER, "messages": [{"type": "bogus"}]})
    assert unknown.json()["details"][0]["property"] == "messages[0].type"
    assert unknown.json()["details"][0]["message"].startswith("Must be one of the following values: [text, ")
    wrong_type = push(line_sandbox, {"to": USER, "messages": [{"type": "text", "text": 5}]})
    assert wrong_type.status_code == 400
    assert wrong_type.json() == {
        "message": "The property, 'messages[0].text', in the request body is invalid (line: -, column: -)"}
    two = push(line_sandbox, {"to": USER, "messages": [{"type": "text", "text": ""}, {"type": "text"}]})
    assert two.json() == {"message": "The request body has 2 error(s)", "details": [
        {"message": "May not be empty", "property": "messages[0].text"},
        {"message": "must be specified", "property": "messages[1].text"}]}


def test_malformed_or_unreadable_bodies_are_a_400_never_a_500(line_sandbox):
    url = f"{line_sandbox.url}/v2/bot/message/push"
    malformed = requests.post(url, headers={**AUTH, "Content-Type": "application/json"}, data=b'{"to": ', timeout=5)
    assert malformed.status_code == 400
    assert malformed.json() == {"message": "The request body could not be parsed as JSON (line: 1, column: 8)"}
    for data in (b"\xff\xfe", b"[" * 100_000, b"[]", b"null", json.dumps(
            {"to": USER, "messages": [{"type": ["text"], "text": "x"}]}).encode()):
        response = requests.post(url, headers={**AUTH, "Content-Type": "application/json"}, data=data, timeout=5)
        assert response.status_code == 400, (data[:20], response.text)
        assert set(response.json()) <= {"message", "details"}
    assert push(line_sandbox).status_code == 200  # and the sandbox goes on


def test_user_ids_in_the_path_are_checked(line_sandbox):
    for method, path in [("POST", "/v2/bot/user/not-a-user/richmenu/richmenu-1"),
                         ("DELETE", "/v2/bot/user/not-a-user/richmenu"), ("POST", "/v2/bot/user/not-a-user/linkToken")]:
        response = requests.request(method, line_sandbox.url + path, headers=AUTH, timeout=5)
        assert response.status_code == 400
        assert response.json() == {"message": "The value for the 'userId' parameter is invalid"}
    assert line_sandbox.control("richmenus") == {} and line_sandbox.control("link_tokens") == {}


def test_audiences_refuse_what_line_refuses(line_sandbox):
    url = f"{line_sandbox.url}/v2/bot/audienceGroup/upload"
    bad_id = requests.post(url, headers=AUTH, timeout=5, json={
        "description": "spring", "audiences": [{"id": USER}, {"id": "not-a-user"}]})
    assert bad_id.status_code == 400
    assert bad_id.json()["details"] == [{"message": "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT",
                                         "property": "audiences[1].id"}]
    long_name = requests.post(url, headers=AUTH, timeout=5, json={"description": "d" * 121, "audiences": []})
    assert long_name.json()["details"] == [{"message": "AUDIENCE_GROUP_NAME_SIZE_OVER", "property": "description"}]
    control = requests.post(url, headers=AUTH, timeout=5, json={"description": "a\nb", "audiences": []})
    assert control.json()["details"] == [{"message": "AUDIENCE_GROUP_NAME_WRONG", "property": "description"}]
    created = requests.post(url, headers=AUTH, timeout=5, json={"description": "spring", "audiences": []})
    assert created.status_code == 202
    added = requests.put(url, headers=AUTH, timeout=5, json={
        "audienceGroupId": created.json()["audienceGroupId"], "audiences": [{"id": "x"}]})
    assert added.status_code == 400
    assert added.json()["details"] == [{"message": "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT",
                                        "property": "audiences[0].id"}]
    assert line_sandbox.control("audience")["groups"][0]["jobs"] == 0


def test_faults_clear_resets_every_fault(line_sandbox):
    line_sandbox.control("faults", {"error_rate": 1.0, "next": [429]})
    cleared = line_sandbox.control("faults", {"clear": True})
    assert cleared["error_rate"] == 0.0 and cleared["next"] == [] and "clear" not in cleared
    assert push(line_sandbox).status_code == 200
    both = line_sandbox.control("faults", {"clear": True, "latency_ms": 5})
    assert both["latency_ms"] == 5 and both["error_rate"] == 0.0
