"""A thin LINE Messaging API client: requests.Session, timeouts, typed errors, no hidden retries.

The caller decides what a failure means (the sender retries 429/5xx/timeouts later
with the same X-Line-Retry-Key; 409 on a retried key means LINE already has it).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

import requests
import urllib3
from django.conf import settings

from mercari_ops.common.http import http_session

from .metrics import request_counted


class LineError(Exception):
    def __init__(self, message: str, *, status: int | None = None, body: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.body = body or {}
        self.headers = headers or {}

    @property
    def reason(self) -> str:
        details = self.body.get("details") or []
        detail = "; ".join(f"{d.get('property', '')}: {d.get('message', '')}".strip(": ") for d in details[:3])
        text = f"{self.status} {self.body.get('message', str(self))}"
        return f"{text} ({detail})" if detail else text


class LineBadRequest(LineError):
    """4xx other than 409/429: the request itself is wrong; do not retry."""


class LineConflict(LineError):
    """409: for push/multicast, the retry key was already accepted (the message is delivered)."""

    @property
    def accepted_request_id(self) -> str:
        return self.headers.get("x-line-accepted-request-id", "")


class LineRateLimited(LineError):
    """429: rate limit, monthly quota, or (audience) too many jobs in progress. Retry later."""


class LineServerError(LineError):
    """5xx: retry later (with the same retry key)."""


class LineTimeout(LineError):
    """No answer in time (or the connection failed): the outcome is unknown; retry with the same key."""


@dataclass
class LineResponse:
    status: int
    body: dict
    request_id: str


class LineClient:
    def __init__(self, *, base_url: str | None = None, access_token: str | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None,
                 audience_read_timeout: float | None = None, pool_size: int = 16):
        self.base_url = (base_url or settings.LINE_API_BASE).rstrip("/")
        self.connect_timeout = connect_timeout or settings.LINE_CONNECT_TIMEOUT
        self.read_timeout = read_timeout or settings.LINE_READ_TIMEOUT
        self.audience_read_timeout = audience_read_timeout or settings.LINE_AUDIENCE_READ_TIMEOUT
        self.session = http_session(self.base_url, pool_size=pool_size,
                                    token=access_token or settings.LINE_CHANNEL_ACCESS_TOKEN)
        self.session.headers["Content-Type"] = "application/json"
        self._posts: dict[str, tuple] = {}  # path -> (the session's prepared POST without a body, its adapter)

    # ---- plumbing ---------------------------------------------------------------------------
    def _call(self, method: str, path: str, *, json_body=None, headers: dict | None = None,
              read_timeout: float | None = None) -> LineResponse:
        try:
            response = self.session.request(method, self.base_url + path, json=json_body, headers=headers,
                                            timeout=(self.connect_timeout, read_timeout or self.read_timeout))
        except (requests.Timeout, requests.ConnectionError) as exc:
            request_counted(path, None)
            raise LineTimeout(f"{method} {path}: {type(exc).__name__}") from exc
        return self._answer(method, path, response.status_code, response.content, response.headers)

    def _post_fast(self, path: str, data: bytes, retry_key: str) -> LineResponse:
        """POST `data` straight through the session's urllib3 connection pool.

        The sender's hot path (push/multicast, 1,000 a second). `Session.request` merges the session's
        headers, cookies, hooks and settings into a new PreparedRequest and follows redirects on every
        call; `HTTPAdapter.send` then rebuilds the pool key, the URL and a `requests.Response` around
        urllib3's answer. None of that varies between calls (about a third of a sender's CPU per push,
        measured with py-spy), so the session's request is prepared once per path, and its adapter's pool
        (the same pool, proxies, TLS verification and timeouts `Session.send` would use) is called
        directly. LINE sets no cookies and never redirects these endpoints (a 3xx is an error here,
        never re-posted).
        """
        known = self._posts.get(path)
        if known is None:
            template = self.session.prepare_request(requests.Request("POST", self.base_url + path))
            adapter = self.session.get_adapter(template.url)
            pool = adapter.get_connection_with_tls_context(template, self.session.verify, self.session.proxies,
                                                           self.session.cert)
            known = self._posts[path] = (pool, adapter.request_url(template, self.session.proxies),
                                         dict(template.headers))
        pool, url, headers = known
        headers = {**headers, "Content-Length": str(len(data)), "X-Line-Retry-Key": retry_key}
        try:
            response = pool.urlopen("POST", url, body=data, headers=headers, retries=False, redirect=False,
                                    assert_same_host=False, preload_content=True, decode_content=False,
                                    timeout=urllib3.Timeout(connect=self.connect_timeout, read=self.read_timeout))
        except urllib3.exceptions.ClosedPoolError:
            self._posts.pop(path, None)  # the session was closed or its pools cleared: take the current pool
            return self._post_fast(path, data, retry_key)
        except (urllib3.exceptions.HTTPError, OSError) as exc:  # timeouts, refused or dropped connections
            request_counted(path, None)
            raise LineTimeout(f"POST {path}: {type(exc).__name__}") from exc
        return self._answer("POST", path, response.status, response.data, response.headers)

    def _answer(self, method: str, path: str, status: int, content: bytes, headers) -> LineResponse:
        """The LineResponse of a 2xx; the typed LineError of anything else. `headers`: case-insensitive."""
        request_counted(path, status)
        try:
            body = json.loads(content) if content else {}
        except ValueError:
            body = {"message": content[:200].decode(errors="replace")}
        if status < 300:
            return LineResponse(status, body, headers.get("x-line-request-id", ""))
        error_class = (LineRateLimited if status == 429 else LineConflict if status == 409
                       else LineServerError if status >= 500 else LineBadRequest)
        raise error_class(f"{method} {path}: {status} {body.get('message', '') if isinstance(body, dict) else ''}",
                          status=status, body=body if isinstance(body, dict) else {},
                          headers={k.lower(): v for k, v in headers.items()})

    # ---- messages ---------------------------------------------------------------------------
    def push(self, *, to: str, messages: list[dict], retry_key: str) -> LineResponse:
        return self.send_body(kind="push", body={"to": to, "messages": messages}, retry_key=retry_key)

    def multicast(self, *, to: list[str], messages: list[dict], retry_key: str) -> LineResponse:
        return self.send_body(kind="multicast", body={"to": to, "messages": messages}, retry_key=retry_key)

    def send_body(self, *, kind: str, body: dict, retry_key: str) -> LineResponse:
        """Send a stored push/multicast body as is (retries must be byte-for-byte the same request)."""
        if kind not in ("push", "multicast"):
            raise ValueError(f"unknown message request kind {kind!r}")
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return self._post_fast(f"/v2/bot/message/{kind}", data, str(retry_key))

    def reply(self, *, reply_token: str, messages: list[dict]) -> LineResponse:
        return self._call("POST", "/v2/bot/message/reply", json_body={"replyToken": reply_token, "messages": messages})

    # ---- users ------------------------------------------------------------------------------
    def rich_menu_link(self, *, user_id: str, rich_menu_id: str) -> LineResponse:
        return self._call("POST", f"/v2/bot/user/{user_id}/richmenu/{rich_menu_id}")

    def rich_menu_unlink(self, *, user_id: str) -> LineResponse:
        return self._call("DELETE", f"/v2/bot/user/{user_id}/richmenu")

    def link_token_issue(self, *, user_id: str) -> str:
        return self._call("POST", f"/v2/bot/user/{user_id}/linkToken").body["linkToken"]

    # ---- audiences --------------------------------------------------------------------------
    def audience_create(self, *, description: str, audiences: list[str] | None = None,
                        upload_description: str | None = None) -> dict:
        body = {"description": description, "isIfaAudience": False,
                "audiences": [{"id": line_id} for line_id in audiences or []]}
        if upload_description:
            body["uploadDescription"] = upload_description
        return self._call("POST", "/v2/bot/audienceGroup/upload", json_body=body,
                          read_timeout=self.audience_read_timeout).body

    def audience_add(self, *, audience_group_id: int, audiences: list[str], upload_description: str) -> None:
        self._call("PUT", "/v2/bot/audienceGroup/upload", read_timeout=self.audience_read_timeout, json_body={
            "audienceGroupId": audience_group_id, "uploadDescription": upload_description,
            "audiences": [{"id": line_id} for line_id in audiences]})

    def audience_get(self, *, audience_group_id: int) -> dict:
        return self._call("GET", f"/v2/bot/audienceGroup/{audience_group_id}").body


_local = threading.local()


def line_client() -> LineClient:
    """One client (and connection pool) per thread, rebuilt when LINE_API_BASE changes (tests)."""
    client = getattr(_local, "client", None)
    if client is None or client.base_url != settings.LINE_API_BASE.rstrip("/"):
        client = _local.client = LineClient()
    return client
