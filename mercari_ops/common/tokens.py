"""Service tokens on the hot path: check a key, with a per-process cache every process drops at once on a revocation.

Keys live hashed in `ServiceToken` (mercari_ops/common/models.py); services.service_token_create/_revoke write
them. A request costs, when its token is cached: one non-blocking recv on the process's subscription to the
revocation epoch (EpochWatcher; no round trip), one dict lookup, two comparisons. A GET per request (one more
round trip to Redis, which halved the estimate's share on a loaded 2-core machine) is only the fallback while the
subscription is down.

The epoch is a random value every revocation, rotation and scope change writes to Redis (before and after its
commit). A cache entry is valid only under the epoch it was filled under, so a revoked token gets 401 on the
next request on every process. Redis unreachable: no cache for that request, the database decides (never a 500);
after a failure the process waits REDIS_RETRY_SECONDS before trying Redis again. API_TOKEN_CACHE_SECONDS stays
as a backstop for a revocation whose epoch write failed (logged as an ERROR by the service).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.status import HTTP_403_FORBIDDEN

from .errors import DomainError

logger = logging.getLogger(__name__)

SCOPES = ("estimate", "history_read", "repay", "campaigns_write", "line_linking")
SCOPE_LABELS = {
    "estimate": _("Points estimate"),
    "history_read": _("Payment history: read"),
    "repay": _("Payment history: repay"),
    "campaigns_write": _("Campaigns: create and read"),
    "line_linking": _("LINE account linking"),
}
ANY_SCOPE = "*"  # a view any valid token may call (whoami)
EPOCH_KEY = "mops:auth:token-epoch"
EPOCH_CHANNEL = EPOCH_KEY  # every write of the epoch is also published here
PREFIX_LENGTH = 8
LAST_USED_EVERY = timedelta(minutes=1)
REDIS_RETRY_SECONDS = 1.0


class ScopeMissing(DomainError):
    """403 naming the scope the view requires (rendered as {"error", "field"} like every DomainError)."""

    status_code = HTTP_403_FORBIDDEN

    def __init__(self, scope: str):
        super().__init__(f"this token lacks the scope {scope!r}", "Authorization")
        self.scope = scope


def key_new() -> str:
    """256 random bits, URL-safe (43 characters): fits `Authorization: Token <key>`."""
    return secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What a request knows of its token (request.auth)."""

    token_id: int
    service: str
    scopes: frozenset[str]
    expires_ts: float | None  # epoch seconds; None: no expiry

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise ScopeMissing(scope)


class _Entry:
    __slots__ = ("epoch", "valid_until", "user", "info", "touched")

    def __init__(self, epoch, valid_until, user, info, touched):
        self.epoch, self.valid_until, self.user, self.info, self.touched = epoch, valid_until, user, info, touched


class EpochReader:
    """GET of the epoch on one raw connection per thread (connected by redis-py: password, database, TLS).

    Returns the value (b"" when unset) or None when Redis cannot answer; then it is not asked again for
    REDIS_RETRY_SECONDS, so an outage costs one timeout per process and second, not one per request.
    """

    def __init__(self, url: str | None = None, *, timeout: float | None = None):
        self.url = url
        self.timeout = timeout
        self._local = threading.local()
        self._retry_at = 0.0

    def _command(self) -> bytes:
        return b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(EPOCH_KEY), EPOCH_KEY.encode())

    def _connect(self):
        pool = redis.ConnectionPool.from_url(self.url or settings.REDIS_URL)
        timeout = self.timeout if self.timeout is not None else settings.API_TOKEN_EPOCH_TIMEOUT_SECONDS
        connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": timeout,
                                              "socket_connect_timeout": timeout})
        connection.connect()
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection._sock

    def read(self) -> bytes | None:
        local = self._local
        connection = getattr(local, "connection", None)
        try:
            if connection is None or local.pid != os.getpid():  # a forked worker never shares its parent's socket
                if time.monotonic() < self._retry_at:
                    return None
                sock = self._connect()
            else:
                sock = connection._sock
            sock.sendall(self._command())
            return self._reply(sock)
        except (OSError, redis.RedisError, ValueError) as exc:
            self._drop()
            self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("token epoch: Redis unavailable (%s); tokens checked in the database", exc)
            return None

    @staticmethod
    def _reply(sock) -> bytes:
        buf = sock.recv(256)
        while True:
            if buf.startswith((b"$-1\r\n", b"_\r\n")):  # nil in RESP2 and RESP3 (redis-py 8 speaks RESP3)
                return b""
            if buf[:1] != b"$":
                raise ValueError(f"unexpected reply {buf[:40]!r}")
            head = buf.find(b"\r\n")
            if head > 0:
                end = head + 2 + int(buf[1:head])
                if len(buf) >= end + 2:
                    return buf[head + 2:end]
            chunk = sock.recv(256)
            if not chunk:
                raise ConnectionError("Redis closed the connection")
            buf += chunk

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.disconnect()
            except Exception:  # noqa: BLE001 -- closing a broken socket may fail in any way; it is gone anyway
                pass


class EpochWatcher:
    """The epoch without a round trip per request: one SUBSCRIBE connection per process to EPOCH_CHANNEL, polled
    with a non-blocking recv (a syscall, no wait for Redis). Nothing arrived: the epoch is the one last read.
    Anything arrived (a publish): it is read again with the reader's GET. While the subscription is down, every
    request asks the reader (the GET per request), so a revocation is never missed.

    epoch_bump waits for a PING after its PUBLISH: Redis has then written the message to every subscriber's
    socket, before the revoking request answers its caller.
    """

    def __init__(self, reader: EpochReader):
        self.reader = reader
        self._lock = threading.Lock()
        self._connection = None
        self._sock = None
        self._pid = None
        self._current: bytes | None = None
        self._retry_at = 0.0

    def read(self) -> bytes | None:
        with self._lock:
            if self._sock is None or self._pid != os.getpid():
                if not self._subscribe():
                    return self.reader.read()
                return self._current
            drained = False
            while True:  # drain: however many publishes arrived, one GET reads the latest epoch
                try:
                    data = self._sock.recv(65536)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                if not data:  # closed by Redis: back to a GET per request until subscribed again
                    self._close()
                    return self.reader.read()
                drained = True
            if not drained:
                return self._current
            self._current = self.reader.read()
            if self._current is None:
                self._close()
            return self._current

    def _subscribe(self) -> bool:
        self._close()
        if time.monotonic() < self._retry_at:
            return False
        try:
            pool = redis.ConnectionPool.from_url(self.reader.url or settings.REDIS_URL)
            timeout = (self.reader.timeout if self.reader.timeout is not None
                       else settings.API_TOKEN_EPOCH_TIMEOUT_SECONDS)
            connection = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": timeout,
                                                  "socket_connect_timeout": timeout})
            connection.connect()
            sock = connection._sock
            channel = EPOCH_CHANNEL.encode()
            sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))
            if channel not in sock.recv(4096):  # the confirmation names the channel
                raise ConnectionError("no SUBSCRIBE confirmation")
        except (OSError, redis.RedisError, ValueError) as exc:
            self._retry_at = time.monotonic() + REDIS_RETRY_SECONDS
            logger.warning("token epoch: no subscription (%s); one GET per request meanwhile", exc)
            return False
        current = self.reader.read()  # after subscribing: a later write is both seen here or published
        if current is None:
            connection.disconnect()
            return False
        sock.setblocking(False)  # a recv on a socket with a timeout would wait for data; this one never waits
        self._connection, self._sock, self._pid, self._current = connection, sock, os.getpid(), current
        return True

    def _close(self) -> None:
        connection, self._connection, self._sock = self._connection, None, None
        if connection is not None and self._pid == os.getpid():
            try:
                connection.disconnect()
            except Exception:  # noqa: BLE001 -- a broken socket may fail to close in any way; it is gone anyway
                pass


class TokenCache:
    """Key -> (user, TokenInfo) for this process, valid under the epoch it was filled under."""

    MAX_ENTRIES = 10_000

    def __init__(self, epoch_reader=None):
        self.epochs = epoch_reader or EpochWatcher(EpochReader())
        self._entries: dict[str, _Entry] = {}

    def clear(self) -> None:
        self._entries.clear()

    def check(self, key: str, *, now: datetime | None = None):
        """(user, TokenInfo) for a valid key; AuthenticationFailed otherwise."""
        epoch = self.epochs.read()
        mono = time.monotonic()
        entry = self._entries.get(key) if epoch is not None else None
        if entry is None or entry.epoch != epoch or entry.valid_until <= mono:
            entry = _load(key, now=now)
            entry.epoch, entry.valid_until = epoch, mono + settings.API_TOKEN_CACHE_SECONDS
            if epoch is not None:
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
                self._entries[key] = entry
        wall = time.time() if now is None else now.timestamp()
        expires = entry.info.expires_ts
        if expires is not None and wall >= expires:
            raise AuthenticationFailed(_("Token expired."))
        if mono - entry.touched >= LAST_USED_EVERY.total_seconds() or now is not None:
            entry.touched = mono
            _touch(entry.info.token_id, now=now)
        return entry.user, entry.info


def _load(key: str, *, now: datetime | None) -> _Entry:
    from .models import ServiceToken

    digest = key_hash(key)
    for row in ServiceToken.objects.select_related("user").filter(prefix=key[:PREFIX_LENGTH]):
        if not hmac.compare_digest(row.key_hash, digest):
            continue
        if row.revoked_at is not None:
            break
        if row.expires_at is not None and row.expires_at <= (now or timezone.now()):
            raise AuthenticationFailed(_("Token expired."))
        if not row.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        info = TokenInfo(row.pk, row.service, frozenset(row.scopes),
                         row.expires_at.timestamp() if row.expires_at else None)
        return _Entry(None, 0.0, row.user, info, float("-inf"))
    raise AuthenticationFailed(_("Invalid token."))


def _touch(token_id: int, *, now: datetime | None) -> None:
    """last_used_at, written at most once a minute per token (the condition keeps other processes' writes out)."""
    from .models import ServiceToken

    now = now or timezone.now()
    ServiceToken.objects.filter(pk=token_id).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_EVERY)).update(last_used_at=now)


_writer: redis.Redis | None = None


def epoch_bump() -> bool:
    """Every process's cached tokens are checked again on their next request. False when Redis failed."""
    global _writer
    token_cache.clear()
    try:
        if _writer is None:
            _writer = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=settings.REDIS_SOCKET_TIMEOUT_SECONDS,
                                           socket_connect_timeout=settings.REDIS_CONNECT_TIMEOUT_SECONDS)
        epoch = uuid.uuid4().hex
        _writer.set(EPOCH_KEY, epoch)
        _writer.publish(EPOCH_CHANNEL, epoch)  # after the SET: a subscriber's GET reads this value
        # Redis writes a publish to its subscribers in the event-loop pass that answers it; a PING answered after
        # that pass means the message is in every subscriber's socket before this revocation returns.
        _writer.ping()
        return True
    except redis.RedisError as exc:
        logger.error("token epoch not written (%s): other processes keep cached tokens up to "
                     "API_TOKEN_CACHE_SECONDS=%s", exc, settings.API_TOKEN_CACHE_SECONDS)
        return False


token_cache = TokenCache()
