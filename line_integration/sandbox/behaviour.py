"""What the LINE sandbox does with a request: LINE's rules, limits, audience jobs, faults, records.

Everything lives in memory and runs on the event loop thread. Time is read from `clock` (the `time` module
by default; tests pass a manual clock and move it, e.g. to finish audience jobs without waiting for them).
Control endpoints live under /__sandbox/ (see README "LINE integration").
"""

from __future__ import annotations

import json
import random
import re
import secrets
import threading
import time
import uuid
from array import array
from bisect import bisect_left
from collections import Counter, defaultdict, deque
from urllib.parse import parse_qs

from line_integration import spec

from .http import Reply, Request

DEFAULT_LIMITS = {  # endpoint -> (requests, per seconds); LINE's published limits (REFERENCE.md)
    "push": (2000, 1.0), "multicast": (200, 1.0), "reply": (2000, 1.0), "richmenu_link": (2000, 1.0),
    "richmenu_unlink": (2000, 1.0), "link_token": (2000, 1.0), "audience_create": (60, 60.0),
    "audience_add": (60, 60.0), "audience_get": (60, 60.0),
}
AUDIENCE_ENDPOINTS = ("audience_create", "audience_add", "audience_get")
DEFAULT_FAULTS = {
    "error_rate": 0.0,  # share of requests answered with error_status
    "error_status": 500,
    "accept_before_error": 0.5,  # share of those errors that happen after the message was accepted
    "timeout_rate": 0.0,  # share of requests whose answer is held for timeout_seconds
    "timeout_seconds": 40.0,
    "accept_before_timeout": 0.5,
    "rate_429": 0.0,  # extra random 429s on top of the rate limiter
    "latency_ms": 0.0,  # added to every answer
    "next": [],  # scripted answers for the next requests: 429, 500, "500+" (after accept), "timeout", "timeout+"
    "endpoints": None,  # restrict faults to these endpoint names; None = every LINE endpoint
    "seed": 1,
}
RECENT_LIMIT = 20000  # full request bodies kept for /__sandbox/requests
USER_LOG_LIMIT = 20000  # users whose delivered messages are kept (counts are kept for everyone)
USER_ID = re.compile(r"^U[0-9a-f]{32}$")
PUSH_TARGET = re.compile(r"^[UCR][0-9a-f]{32}$")  # a user, a group chat or a multi-person chat
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")

ROUTES = [
    ("POST", re.compile(r"^/v2/bot/message/push$"), "push"),
    ("POST", re.compile(r"^/v2/bot/message/multicast$"), "multicast"),
    ("POST", re.compile(r"^/v2/bot/message/reply$"), "reply"),
    ("POST", re.compile(r"^/v2/bot/user/(?P<user>[^/]+)/richmenu/(?P<menu>[^/]+)$"), "richmenu_link"),
    ("DELETE", re.compile(r"^/v2/bot/user/(?P<user>[^/]+)/richmenu$"), "richmenu_unlink"),
    ("POST", re.compile(r"^/v2/bot/user/(?P<user>[^/]+)/linkToken$"), "link_token"),
    ("POST", re.compile(r"^/v2/bot/audienceGroup/upload$"), "audience_create"),
    ("PUT", re.compile(r"^/v2/bot/audienceGroup/upload$"), "audience_add"),
    ("GET", re.compile(r"^/v2/bot/audienceGroup/(?P<group>\d+)$"), "audience_get"),
]
BODY_SCHEMAS = {"push": ("messaging", "PushMessageRequest"), "multicast": ("messaging", "MulticastRequest"),
                "reply": ("messaging", "ReplyMessageRequest"),
                "audience_create": ("audience", "CreateAudienceGroupRequest"),
                "audience_add": ("audience", "AddAudienceToAudienceGroupRequest")}
# Long arrays are checked element-wise in _validate and validated by the spec on a short copy.
LIST_FIELDS = {"multicast": "to", "audience_create": "audiences", "audience_add": "audiences"}


def bad_request(message: str, details: list[dict] | None = None) -> Reply:
    body = {"message": message}
    if details:
        body["details"] = details
    return Reply(400, body)


def body_refused(details: list[dict]) -> Reply:
    """LINE's 400 for a body it read and refused; a value of the wrong type is one it could not read at all."""
    unreadable = next((d for d in details if d["message"].startswith("The property, ")), None)
    if unreadable is not None:
        return bad_request(unreadable["message"] if unreadable["property"] else spec.UNREADABLE_BODY)
    return bad_request(f"The request body has {len(details)} error(s)", details)


def recipient_refused(property_name: str) -> Reply:
    return bad_request(spec.INVALID_PROPERTY.format(property_name))


def audience_ids_refused(audiences: list[dict]) -> Reply | None:
    """An audience of user IDs (not IFAs) refuses anything else."""
    for index, item in enumerate(audiences):
        if not USER_ID.match(item["id"]):
            return body_refused([{"message": "UPLOAD_AUDIENCE_GROUP_INVALID_AUDIENCE_ID_FORMAT",
                                  "property": f"audiences[{index}].id"}])
    return None


class TokenBucket:
    def __init__(self, limit: int, period: float, now: float):
        self.capacity = float(limit)
        self.rate = limit / period
        self.tokens = float(limit)
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Sandbox:
    def __init__(self, *, access_token: str | None = None, audience_job_seconds: float = 5.0, clock=time):
        self.access_token = access_token
        self.audience_job_seconds = audience_job_seconds
        self.clock = clock  # time(): seconds since the epoch
        # Held while a LINE request is handled and notified after it: an in-process caller waits for what
        # the sandbox received (`wait_for`) instead of polling it.
        self.changed = threading.Condition()
        self.reset()
        # Load and compile the OpenAPI specs now: done lazily, the first request of each kind would
        # spend a second or more on it and time out a client with a short read timeout.
        for kind, schema in BODY_SCHEMAS.values():
            spec.validator(kind, schema)

    # ---- state -------------------------------------------------------------------------------
    def reset(self, keep_config: bool = False) -> None:
        if not keep_config:
            self.limits = dict(DEFAULT_LIMITS)
            self.faults = dict(DEFAULT_FAULTS, next=[])
            self.audience_busy_status = 429
            self.audience_fail_rate = 0.0
            self.enrich = {"status": 200, "delay_ms": 0.0}
        self.started = self.clock.time()
        self.buckets = {name: TokenBucket(*limit, self.started) for name, limit in self.limits.items() if limit}
        self.random = random.Random(self.faults.get("seed", 1))
        self.request_seq = 0
        self.recent: deque = deque(maxlen=RECENT_LIMIT)
        self.status_counts: dict[str, Counter] = defaultdict(Counter)
        self.arrived_at: dict[str, array] = defaultdict(lambda: array("d"))  # every authenticated request
        self.retry_keys: dict[str, str] = {}
        self.deliveries: Counter = Counter()
        self.user_messages: dict[str, list] = {}
        self.duplicates_refused = 0
        self.reply_tokens_used: set[str] = set()
        self.link_tokens: dict[str, dict] = {}
        self.rich_menus: dict[str, str] = {}
        self.groups: dict[int, dict] = {}
        self.expire_on_add: set[int] = set()  # groups that expire when the next add arrives (after a get)
        self.next_group_id = 1000
        self.next_job_id = 5000
        self.max_jobs_in_progress = 0
        self.jobs_refused = 0

    # ---- dispatch ------------------------------------------------------------------------------
    def wait_for(self, predicate, timeout: float) -> bool:
        """Block until `predicate(sandbox)` holds after a LINE request (False if `timeout` seconds pass first)."""
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self), timeout)

    def handle(self, request: Request) -> Reply:
        if request.path.startswith("/__sandbox/") or request.path.startswith("/__enrich/"):
            return self._handle(request)
        with self.changed:
            reply = self._handle(request)
            self.changed.notify_all()
        return reply

    def _handle(self, request: Request) -> Reply:
        if request.path.startswith("/__sandbox/"):
            return self.control(request)
        if request.path.startswith("/__enrich/"):  # a stand-in for ENRICH_URL (saved-search items, ...)
            if self.enrich["status"] != 200:
                return Reply(self.enrich["status"], {"message": "enrichment unavailable"})
            return Reply(200, {"path": request.path[len("/__enrich"):], "count": 2,
                               "items": [{"name": "Vintage camera", "price": 12000}, {"name": "Film", "price": 800}]},
                         delay=self.enrich["delay_ms"] / 1000.0)
        name, match = route(request.method, request.path)
        if match is None:
            return Reply(404, {"message": "Not found"})
        now = self.clock.time()
        self.request_seq += 1
        request_id = str(uuid.uuid4())
        reply, accepted, body = self._line(name, match.groupdict(), request, request_id, now)
        record = {"id": self.request_seq, "request_id": request_id, "at": now, "endpoint": name,
                  "method": request.method, "path": request.path, "status": reply.status,
                  "retry_key": request.headers.get("x-line-retry-key"), "accepted": accepted}
        if body is not None and name not in ("audience_create", "audience_add"):
            record["body"] = body
        elif isinstance(body, dict):
            record["body"] = {k: v for k, v in body.items() if k != "audiences"}
            record["audience_count"] = len(body.get("audiences") or [])
        self.recent.append(record)
        self.status_counts[name][reply.status] += 1
        reply.headers.setdefault("x-line-request-id", request_id)
        latency = float(self.faults.get("latency_ms") or 0) / 1000.0
        if latency and self._faulty(name):
            reply.delay += latency
        return reply

    def _faulty(self, name: str) -> bool:
        only = self.faults.get("endpoints")
        return only is None or name in only

    def _pick_fault(self, name: str) -> str | None:
        """None, or "429", "5xx", "5xx+", "timeout", "timeout+" ('+' = after the request was accepted)."""
        if not self._faulty(name):
            return None
        scripted = self.faults.get("next") or []
        if scripted:
            entry = str(scripted.pop(0))
            if entry == "429":
                return "429"
            if entry.startswith("timeout"):
                return entry
            return ("5xx+" if entry.endswith("+") else "5xx") + ":" + entry.rstrip("+")
        roll = self.random.random()
        if roll < self.faults["rate_429"]:
            return "429"
        roll -= self.faults["rate_429"]
        if roll < self.faults["error_rate"]:
            after = self.random.random() < self.faults["accept_before_error"]
            return ("5xx+" if after else "5xx") + f":{self.faults['error_status']}"
        roll -= self.faults["error_rate"]
        if roll < self.faults["timeout_rate"]:
            return "timeout+" if self.random.random() < self.faults["accept_before_timeout"] else "timeout"
        return None

    def _fault_reply(self, fault: str) -> Reply:
        if fault.startswith("timeout"):
            return Reply(500, {"message": "sandbox timeout"}, delay=float(self.faults["timeout_seconds"]))
        status = int(fault.split(":")[1])
        return Reply(status, {"message": "Internal server error (sandbox fault)"})

    def _line(self, name: str, params: dict, request: Request, request_id: str, now: float):
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or (self.access_token and auth[7:] != self.access_token):
            return Reply(401, {"message": "Authentication failed. Confirm that the access token in the "
                                          "authorization header is valid."}), False, None
        self.arrived_at[name].append(now)
        bucket = self.buckets.get(name)
        if bucket is not None and not bucket.take(now):
            return Reply(429, {"message": "The API rate limit has been exceeded. Try again later."}), False, None
        fault = self._pick_fault(name)
        if fault == "429":
            return Reply(429, {"message": "The API rate limit has been exceeded. Try again later."}), False, None
        if fault in ("timeout",) or (fault and fault.startswith("5xx:")):
            return self._fault_reply(fault), False, None
        if "user" in params and not user_id_valid(params["user"]):
            return bad_request("The value for the 'userId' parameter is invalid"), False, None
        body = None
        if request.method in ("POST", "PUT") and name in BODY_SCHEMAS:
            try:
                body = json.loads(request.body or b"null")
            except json.JSONDecodeError as error:
                return bad_request(f"The request body could not be parsed as JSON (line: {error.lineno}, "
                                   f"column: {error.colno})"), False, None
            except (ValueError, RecursionError):  # undecodable bytes, nesting deeper than the parser goes
                return bad_request(spec.UNREADABLE_BODY), False, None
            try:
                refused = self._validate(name, body)
            except RecursionError:
                refused = bad_request(spec.UNREADABLE_BODY)
            if refused is not None:
                return refused, False, body
        retry_key = request.headers.get("x-line-retry-key")
        if retry_key is not None:
            if name not in ("push", "multicast"):
                return bad_request("X-Line-Retry-Key is not supported for this endpoint"), False, body
            try:
                uuid.UUID(retry_key)
            except ValueError:
                return bad_request("Invalid X-Line-Retry-Key",
                                   [{"message": "must be a UUID", "property": "X-Line-Retry-Key"}]), False, body
            first = self.retry_keys.get(retry_key)
            if first is not None:
                self.duplicates_refused += 1
                return Reply(409, {"message": "The retry key is already accepted"},
                             {"x-line-accepted-request-id": first}), False, body
        reply = getattr(self, f"_do_{name}")(params, body, request_id, now)
        accepted = reply.status < 300
        if accepted and retry_key is not None:
            self.retry_keys[retry_key] = request_id
        if accepted and fault:  # the request took effect, but the caller does not learn it
            return self._fault_reply(fault), True, body
        return reply, accepted, body

    def _validate(self, name: str, body) -> Reply | None:
        """None when LINE would take the body, else LINE's 400: the spec's rules (with LINE's documented limits,
        spec.LINE_LIMITS), then what the spec cannot say (recipient IDs, audience names and IDs)."""
        list_field = LIST_FIELDS.get(name)
        kind, schema = BODY_SCHEMAS[name]
        items = body.get(list_field) if list_field and isinstance(body, dict) else None
        if isinstance(items, list):
            # Long arrays: sizes and element types here, the spec on a short copy (same rules, less CPU).
            limit = 500 if name == "multicast" else 10000
            if len(items) > limit or (name == "multicast" and not items):
                low = 1 if name == "multicast" else 0
                return body_refused([{"message": f"Size must be between {low} and {limit}", "property": list_field}])
            for index, item in enumerate(items):
                if name == "multicast" and not isinstance(item, str):
                    return bad_request(spec.INVALID_PROPERTY.format(f"to[{index}]"))
                if name != "multicast" and not (isinstance(item, dict) and isinstance(item.get("id"), str)):
                    where = f"audiences[{index}]" + (".id" if isinstance(item, dict) else "")
                    return bad_request(spec.INVALID_PROPERTY.format(where))
            body = dict(body, **{list_field: items[:1]})
        if name == "audience_create" and isinstance(body, dict) and isinstance(body.get("description"), str):
            description = body["description"]
            if len(description) > 120:
                return body_refused([{"message": "AUDIENCE_GROUP_NAME_SIZE_OVER", "property": "description"}])
            if CONTROL_CHARACTER.search(description):
                return body_refused([{"message": "AUDIENCE_GROUP_NAME_WRONG", "property": "description"}])
        details = spec.errors(kind, schema, body)
        if not details and name == "audience_create" and not body.get("description"):
            details = [{"message": "must be specified", "property": "description"}]
        if details:
            return body_refused(details)
        if name == "push" and not PUSH_TARGET.match(body["to"]):
            return recipient_refused("to")
        if name == "multicast" and not all(USER_ID.match(to) for to in items):
            return recipient_refused("to")
        if name == "reply" and not body["replyToken"]:
            return bad_request("Invalid reply token")
        if name == "audience_create" and not body.get("isIfaAudience"):
            return audience_ids_refused(items or [])
        return None

    # ---- LINE endpoints ----------------------------------------------------------------------------
    def _deliver(self, to: str, messages: list) -> None:
        self.deliveries[to] += 1
        log = self.user_messages.get(to)
        if log is None and len(self.user_messages) < USER_LOG_LIMIT:
            log = self.user_messages[to] = []
        if log is not None:
            log.append(messages)

    def _do_push(self, params, body, request_id, now) -> Reply:
        self._deliver(body["to"], body["messages"])
        return Reply(200, {"sentMessages": [{"id": str(self.request_seq * 10 + i)} for i in
                                            range(len(body["messages"]))]})

    def _do_multicast(self, params, body, request_id, now) -> Reply:
        for to in body["to"]:
            self._deliver(to, body["messages"])
        return Reply(200, {})

    def _do_reply(self, params, body, request_id, now) -> Reply:
        token = body["replyToken"]
        if token in self.reply_tokens_used:
            return bad_request("Invalid reply token")
        self.reply_tokens_used.add(token)
        return Reply(200, {"sentMessages": [{"id": str(self.request_seq)}]})

    def _do_richmenu_link(self, params, body, request_id, now) -> Reply:
        self.rich_menus[params["user"]] = params["menu"]
        return Reply(200, {})

    def _do_richmenu_unlink(self, params, body, request_id, now) -> Reply:
        self.rich_menus.pop(params["user"], None)
        return Reply(200, {})

    def _do_link_token(self, params, body, request_id, now) -> Reply:
        token = secrets.token_urlsafe(24)
        self.link_tokens[token] = {"user_id": params["user"], "expires": now + 600}
        return Reply(200, {"linkToken": token})

    # ---- audience ------------------------------------------------------------------------------------
    def _job_status(self, job: dict, now: float) -> str:
        age = now - job["created"]
        if age < self.audience_job_seconds / 2:
            return "QUEUED"
        if age < self.audience_job_seconds:
            return "WORKING"
        return "FAILED" if job["fail"] else "FINISHED"

    def _in_progress(self, group: dict, now: float) -> int:
        return sum(1 for job in group["jobs"] if self._job_status(job, now) in ("QUEUED", "WORKING"))

    def _add_job(self, group: dict, body: dict, now: float) -> Reply | None:
        if self._in_progress(group, now) >= 10:
            self.jobs_refused += 1
            return Reply(self.audience_busy_status, {
                "message": "Too many jobs are in progress for this audience group",
                "details": [{"message": "AUDIENCE_GROUP_JOB_IN_PROGRESS_LIMIT_EXCEEDED", "property": ""}]})
        self.next_job_id += 1
        ids = [item["id"] for item in body.get("audiences") or []]
        group["jobs"].append({"id": self.next_job_id, "description": body.get("uploadDescription", ""),
                              "created": now, "count": len(ids),
                              "fail": self.random.random() < self.audience_fail_rate, "ids": ids})
        self.max_jobs_in_progress = max(self.max_jobs_in_progress, self._in_progress(group, now))
        return None

    def _do_audience_create(self, params, body, request_id, now) -> Reply:
        self.next_group_id += 1
        group = {"id": self.next_group_id, "description": body["description"], "created": now,
                 "expire": now + 180 * 86400, "jobs": [], "members": set(), "ifa": bool(body.get("isIfaAudience"))}
        self.groups[group["id"]] = group
        if body.get("audiences"):
            self._add_job(group, body, now)
        return Reply(202, {"audienceGroupId": group["id"], "createRoute": "MESSAGING_API", "type": "UPLOAD",
                           "description": group["description"], "created": int(now),
                           "permission": "READ_WRITE", "expireTimestamp": int(group["expire"]),
                           "isIfaAudience": False})

    def _do_audience_add(self, params, body, request_id, now) -> Reply:
        group = self.groups.get(body.get("audienceGroupId"))
        if group is None:
            return bad_request("audience group not found",
                               [{"message": "AUDIENCE_GROUP_NOT_FOUND", "property": "audienceGroupId"}])
        if group["id"] in self.expire_on_add:
            self.expire_on_add.discard(group["id"])
            group["expire"] = now
        if now >= group["expire"]:
            return bad_request("Cannot upload to this audience group",
                               [{"message": "AUDIENCE_GROUP_CAN_NOT_UPLOAD_STATUS_EXPIRED", "property": ""}])
        refused = (None if group["ifa"] else audience_ids_refused(body.get("audiences") or [])) \
            or self._add_job(group, body, now)
        return refused or Reply(202, {})

    def _do_audience_get(self, params, body, request_id, now) -> Reply:
        group = self.groups.get(int(params["group"]))
        if group is None:
            return bad_request("audience group not found",
                               [{"message": "AUDIENCE_GROUP_NOT_FOUND", "property": "audienceGroupId"}])
        jobs = []
        for job in group["jobs"]:
            status = self._job_status(job, now)
            if status == "FINISHED" and job["ids"]:
                group["members"].update(job["ids"])
                job["ids"] = []
            jobs.append({"audienceGroupJobId": job["id"], "audienceGroupId": group["id"],
                         "description": job["description"], "type": "DIFF_ADD", "jobStatus": status,
                         "audienceCount": job["count"], "created": int(job["created"] * 1000),
                         **({"failedType": "INTERNAL_ERROR"} if status == "FAILED" else {})})
        first = self._job_status(group["jobs"][0], now) if group["jobs"] else "FINISHED"
        status = "EXPIRED" if now >= group["expire"] else ("IN_PROGRESS" if first in ("QUEUED", "WORKING")
                                                             else "READY")
        return Reply(200, {"audienceGroup": {
            "audienceGroupId": group["id"], "type": "UPLOAD", "description": group["description"],
            "status": status, "audienceCount": len(group["members"]), "created": int(group["created"]),
            "isIfaAudience": False, "permission": "READ_WRITE", "createRoute": "MESSAGING_API"},
            "jobs": list(reversed(jobs))[:50]})

    # ---- /__sandbox/ control -------------------------------------------------------------------------
    def control(self, request: Request) -> Reply:
        query = {k: v[-1] for k, v in parse_qs(request.query).items()}
        path = request.path[len("/__sandbox/"):].rstrip("/")
        body = {}
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                return bad_request("control body must be JSON")
            if not isinstance(body, dict):
                return bad_request("control body must be a JSON object")
        if path == "health":
            return Reply(200, {"status": "ok", "uptime": round(self.clock.time() - self.started, 3)})
        if path == "reset" and request.method == "POST":
            self.reset(keep_config=bool(body.get("keep_config")))
            return Reply(200, {"status": "reset"})
        if path == "faults":
            if request.method == "POST":
                clear = body.pop("clear", False)  # {"clear": true}: back to no faults, then the other settings
                unknown = set(body) - set(DEFAULT_FAULTS)
                if unknown:
                    return bad_request(f"unknown fault setting(s): {sorted(unknown)}")
                self.faults = dict(DEFAULT_FAULTS, next=[]) if clear else self.faults
                self.faults.update(body)
                if "seed" in body:
                    self.random = random.Random(body["seed"])
            return Reply(200, self.faults)
        if path == "limits":
            if request.method == "POST":
                for name, value in body.items():
                    if name not in DEFAULT_LIMITS:
                        return bad_request(f"unknown endpoint {name!r}")
                    self.limits[name] = None if value is None else (int(value[0]), float(value[1]))
                self.buckets = {n: TokenBucket(*lim, self.clock.time()) for n, lim in self.limits.items() if lim}
            return Reply(200, {n: lim for n, lim in self.limits.items()})
        if path == "audience":
            if request.method == "POST":
                self.audience_job_seconds = float(body.get("job_seconds", self.audience_job_seconds))
                self.audience_busy_status = int(body.get("busy_status", self.audience_busy_status))
                self.audience_fail_rate = float(body.get("fail_rate", self.audience_fail_rate))
                for group_id, seconds in (body.get("expire_in") or {}).items():
                    self.groups[int(group_id)]["expire"] = self.clock.time() + float(seconds)
                self.expire_on_add.update(int(group_id) for group_id in body.get("expire_on_add") or [])
            now = self.clock.time()
            return Reply(200, {
                "job_seconds": self.audience_job_seconds, "busy_status": self.audience_busy_status,
                "max_jobs_in_progress": self.max_jobs_in_progress, "jobs_refused": self.jobs_refused,
                "max_calls_per_minute": self.max_window("audience", 60.0),
                "groups": [{"audienceGroupId": g["id"], "description": g["description"],
                            "members": len(g["members"]) + sum(len(j["ids"]) for j in g["jobs"]
                                                               if self._job_status(j, now) == "FINISHED"),
                            "jobs": len(g["jobs"]), "in_progress": self._in_progress(g, now),
                            "expire": g["expire"]} for g in self.groups.values()]})
        if path == "enrich":
            if request.method == "POST":
                self.enrich.update({k: body[k] for k in ("status", "delay_ms") if k in body})
            return Reply(200, self.enrich)
        if path == "requests":
            since = int(query.get("since", 0))
            endpoint = query.get("endpoint")
            limit = int(query.get("limit", 1000))
            rows = [r for r in self.recent if r["id"] > since and (endpoint is None or r["endpoint"] == endpoint)]
            return Reply(200, {"requests": rows[:limit], "total": self.request_seq})
        if path == "stats":
            window = float(query.get("window", 1.0))
            return Reply(200, {
                "requests": self.request_seq,
                "status_counts": {name: dict(counts) for name, counts in self.status_counts.items()},
                "max_requests_per_window": {name: self.max_window(name, window) for name in self.arrived_at},
                "window_seconds": window,
                "deliveries": sum(self.deliveries.values()), "recipients": len(self.deliveries),
                "recipients_delivered_more_than_once": sum(1 for n in self.deliveries.values() if n > 1),
                "duplicates_refused": self.duplicates_refused,
                "retry_keys_accepted": len(self.retry_keys),
                "first_request_at": {n: (a[0] if a else None) for n, a in self.arrived_at.items()},
                "last_request_at": {n: (a[-1] if a else None) for n, a in self.arrived_at.items()},
            })
        if path == "arrivals":  # requests per bin of `bin` seconds from the first one (pacing over time)
            stamps = self.arrived_at.get(query.get("endpoint", "push"), array("d"))
            width = float(query.get("bin", 1.0))
            counts = [0] * (int((stamps[-1] - stamps[0]) / width) + 1 if stamps else 0)
            for stamp in stamps:
                counts[int((stamp - stamps[0]) / width)] += 1
            return Reply(200, {"bin_seconds": width, "counts": counts})
        if path == "deliveries":
            to = query.get("to")
            if to:
                return Reply(200, {"to": to, "count": self.deliveries.get(to, 0),
                                   "messages": self.user_messages.get(to, [])})
            return Reply(200, {"counts": dict(self.deliveries)})
        if path == "richmenus":
            return Reply(200, dict(self.rich_menus))
        if path == "link_tokens":
            return Reply(200, self.link_tokens)
        return Reply(404, {"message": "unknown sandbox control path"})

    def max_window(self, name: str, window: float) -> int:
        """Most requests received in any sliding window of `window` seconds."""
        if name == "audience":
            stamps = sorted(t for n in AUDIENCE_ENDPOINTS for t in self.arrived_at.get(n, ()))
        else:
            stamps = self.arrived_at.get(name, array("d"))
        best = 0
        for index, start in enumerate(stamps):
            end = bisect_left(stamps, start + window, lo=index)
            best = max(best, end - index)
        return best


def route(method: str, path: str):
    for route_method, pattern, name in ROUTES:
        match = pattern.match(path)
        if match and route_method == method:
            return name, match
    return None, None


def user_id_valid(value: str) -> bool:
    return bool(USER_ID.match(value))
