"""The LINE sandbox behaves like LINE: spec validation, limits, retry keys, audience jobs, faults, records."""

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
    assert response.json()["details"][0] == {"message": "'text' is a required property", "property": "messages[0]"}


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
