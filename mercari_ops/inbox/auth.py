"""Who may push: Google's OIDC ID token (production, PUBSUB_AUTH=oidc) or a static token (development).

A Pub/Sub push subscription with authentication sends `Authorization: Bearer <JWT>`: an ID token
signed (RS256) by Google for the subscription's service account, with `aud` the audience set on the
subscription, `iss` accounts.google.com, `email` the service account and `email_verified` true.
`OidcVerifier` checks all of it; `GoogleCertificates` holds Google's signing certificates, fetched from
PUBSUB_OIDC_CERTS_URL and kept as long as their Cache-Control max-age allows, fetched again early when a
token names a key they do not hold (Google rotates its keys), never more than once per few seconds.

Why not `google.oauth2.id_token.verify_token` as it is: it fetches the certificates on every call and
checks `iat`/`exp` against the wall clock inside the library. Here google-auth verifies the signature
(`google.auth.crypt.RSAVerifier`, on cryptography) with verifiers built once per certificate fetch, and
the claims are checked as `google.auth.jwt.decode` and `verify_token` check them (the same leeway rule,
the same two issuers) against an injectable clock, each failure naming what failed.

Pub/Sub reuses one token for up to an hour, so a verified token is remembered until it expires (in a
bounded map): the hot path is a dict lookup and a comparison, not an RSA verification per push. A key
Google withdraws therefore stops working for the tokens already seen at their expiry, at most an hour.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable

import requests
from django.conf import settings
from django.core.signals import setting_changed
from google.auth.crypt import RSAVerifier

from mercari_ops.common.http import http_session

logger = logging.getLogger(__name__)

GOOGLE_ISSUERS = frozenset({"https://accounts.google.com", "accounts.google.com"})
Clock = Callable[[], float]


class PushAuthRefused(Exception):
    """The push is not authenticated (401, nothing stored); `reason` names what failed."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class CertificatesUnavailable(Exception):
    """Google's certificates cannot be fetched and none are held: 503, so Pub/Sub redelivers."""


def _max_age(headers) -> float:
    """Seconds a response stays fresh by its Cache-Control max-age (less its Age); 0 without one."""
    cache_control = headers.get("Cache-Control", "")
    match = re.search(r"max-age=(\d+)", cache_control)
    if match is None or "no-cache" in cache_control or "no-store" in cache_control:
        return 0.0
    age = headers.get("Age", "")
    return max(0.0, float(match.group(1)) - (float(age) if age.isdigit() else 0.0))


class GoogleCertificates:
    """Google's token signing certificates (v1 format: a JSON object of key ID -> PEM X.509 certificate).

    Fetched on first use; again once the response's max-age has passed, or when a key ID is asked
    that they do not hold; never sooner than `min_refetch_seconds` after the previous attempt. A failed
    fetch keeps the certificates held (logged); with none held it raises CertificatesUnavailable.
    """

    def __init__(self, url: str, *, clock: Clock = time.time, min_refetch_seconds: float = 5.0,
                 timeout: tuple[float, float] = (3.05, 5.0)):
        self.url = url
        self.clock = clock
        self.min_refetch_seconds = min_refetch_seconds
        self.timeout = timeout
        self.session = http_session(url, pool_size=1)
        self._verifiers: dict[str, RSAVerifier] = {}
        self._fresh_until = float("-inf")
        self._last_attempt = float("-inf")
        self._lock = threading.Lock()

    def verifier(self, kid: str, *, now: float | None = None) -> RSAVerifier | None:
        """The verifier of key `kid`, or None when Google does not (or no longer) sign with it."""
        now = self.clock() if now is None else now
        verifiers = self._verifiers
        if kid in verifiers and now < self._fresh_until:
            return verifiers[kid]
        with self._lock:  # one thread fetches; the others then find its result
            stale = now >= self._fresh_until or kid not in self._verifiers
            if stale and now - self._last_attempt >= self.min_refetch_seconds:
                self._fetch(now)
            if not self._verifiers:
                raise CertificatesUnavailable(f"no OIDC certificates from {self.url} yet, retry later")
            return self._verifiers.get(kid)

    def _fetch(self, now: float) -> None:
        self._last_attempt = now
        try:
            response = self.session.get(self.url, timeout=self.timeout)
            response.raise_for_status()
            verifiers = {str(kid): RSAVerifier.from_string(pem) for kid, pem in response.json().items()}
        except (requests.RequestException, ValueError, TypeError, AttributeError) as exc:
            logger.warning("cannot fetch the OIDC certificates from %s: %r", self.url, exc)
            if not self._verifiers:
                raise CertificatesUnavailable(f"cannot fetch the OIDC certificates from {self.url}, "
                                              "retry later") from exc
            return
        self._verifiers = verifiers
        self._fresh_until = now + _max_age(response.headers)


def _segment(encoded: str) -> bytes:
    return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))


def _jwt_parts(token: str) -> tuple[dict, dict, bytes, bytes]:
    """(header, claims, signed part, signature) of a compact JWS, or PushAuthRefused (malformed)."""
    try:
        encoded_header, encoded_claims, encoded_signature = token.split(".")
        header = json.loads(_segment(encoded_header))
        claims = json.loads(_segment(encoded_claims))
        signature = _segment(encoded_signature)
        signed = f"{encoded_header}.{encoded_claims}".encode("ascii")
    except (ValueError, binascii.Error):  # UnicodeError and JSONDecodeError are ValueErrors
        raise PushAuthRefused("malformed: not a JWT") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise PushAuthRefused("malformed: header and claims must be JSON objects")
    return header, claims, signed, signature


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class OidcVerifier:
    """Verify Pub/Sub's OIDC ID tokens; a verified token is remembered until it expires.

    `clock` (seconds since the epoch) is read once per `verify` unless `now` is given; tests pass their own.
    """

    def __init__(self, *, certificates: GoogleCertificates, audiences: Iterable[str],
                 service_accounts: Iterable[str], clock_skew_seconds: float = 10, clock: Clock = time.time,
                 max_cached_tokens: int = 4096):
        self.certificates = certificates
        self.audiences = frozenset(audiences)
        self.service_accounts = frozenset(service_accounts)
        self.clock_skew_seconds = clock_skew_seconds
        self.clock = clock
        self.max_cached_tokens = max_cached_tokens
        self.signature_checks = 0  # RSA verifications done: the cache keeps this near the number of tokens
        self._verified: dict[str, float] = {}  # token -> exp; written under the lock, read without it
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, *, clock: Clock = time.time) -> OidcVerifier:
        certificates = GoogleCertificates(settings.PUBSUB_OIDC_CERTS_URL, clock=clock)
        return cls(certificates=certificates, audiences=settings.PUBSUB_OIDC_AUDIENCE,
                   service_accounts=settings.PUBSUB_OIDC_SERVICE_ACCOUNTS,
                   clock_skew_seconds=settings.PUBSUB_OIDC_CLOCK_SKEW_SECONDS, clock=clock)

    def verify(self, token: str, *, now: float | None = None) -> None:
        """Return if `token` is a valid ID token for us; raise PushAuthRefused naming what failed."""
        now = self.clock() if now is None else now
        exp = self._verified.get(token)
        if exp is None:
            exp = self._verify_signed(token, now)
            self._remember(token, exp, now)
        elif exp + self.clock_skew_seconds < now:
            raise PushAuthRefused(f"expired at {exp:.0f} (now {now:.0f})")

    def _verify_signed(self, token: str, now: float) -> float:
        """The full check of a token not seen before; returns its `exp`."""
        header, claims, signed, signature = _jwt_parts(token)
        if header.get("alg") != "RS256":
            raise PushAuthRefused(f"signature: algorithm {header.get('alg')!r}, not RS256")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise PushAuthRefused("malformed: no key ID (kid) in the header")
        verifier = self.certificates.verifier(kid, now=now)
        if verifier is None:
            raise PushAuthRefused(f"signature: key {kid!r} is not one of Google's current keys")
        self.signature_checks += 1
        if not verifier.verify(signed, signature):
            raise PushAuthRefused("signature: does not verify")
        iat, exp = claims.get("iat"), claims.get("exp")
        if not _is_number(iat) or not _is_number(exp):
            raise PushAuthRefused("malformed: iat and exp must be numbers")
        if now < iat - self.clock_skew_seconds:
            raise PushAuthRefused(f"issued in the future (iat {iat:.0f}, now {now:.0f})")
        if exp + self.clock_skew_seconds < now:
            raise PushAuthRefused(f"expired at {exp:.0f} (now {now:.0f})")
        issuer = claims.get("iss")
        if issuer not in GOOGLE_ISSUERS:
            raise PushAuthRefused(f"issuer {issuer!r} is not Google")
        audience = claims.get("aud")
        if not isinstance(audience, str) or audience not in self.audiences:
            raise PushAuthRefused(f"audience {audience!r} is not one of PUBSUB_OIDC_AUDIENCE")
        email = claims.get("email")
        if not isinstance(email, str) or email not in self.service_accounts:
            raise PushAuthRefused(f"service account {email!r} is not one of PUBSUB_OIDC_SERVICE_ACCOUNTS")
        if claims.get("email_verified") is not True:
            raise PushAuthRefused(f"service account {email!r}: email_verified is not true")
        return float(exp)

    def _remember(self, token: str, exp: float, now: float) -> None:
        with self._lock:
            verified = self._verified
            if len(verified) >= self.max_cached_tokens:
                live = [(key, value) for key, value in verified.items() if value + self.clock_skew_seconds >= now]
                verified = dict(live[len(live) // 2:] if len(live) >= self.max_cached_tokens else live)
            verified[token] = exp
            self._verified = verified


class _VerifierHolder:
    """This process's verifier, built from settings on first use; tests install one on their own clock."""

    verifier: OidcVerifier | None = None
    lock = threading.Lock()


def oidc_verifier() -> OidcVerifier:
    verifier = _VerifierHolder.verifier
    if verifier is None:
        with _VerifierHolder.lock:
            if _VerifierHolder.verifier is None:
                _VerifierHolder.verifier = OidcVerifier.from_settings()
            verifier = _VerifierHolder.verifier
    return verifier


def oidc_verifier_use(verifier: OidcVerifier | None) -> None:
    """Use `verifier` for pushes from now on; None: build one from settings at the next push."""
    _VerifierHolder.verifier = verifier


def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("PUBSUB_OIDC_"):
        oidc_verifier_use(None)


setting_changed.connect(_settings_changed)
