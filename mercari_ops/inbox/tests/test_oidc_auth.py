"""PUBSUB_AUTH=oidc: Google's ID tokens, checked against certificates a local server serves.

Every test runs on a manual clock (`now` in seconds since the epoch) and its own RSA keys; nothing
reaches Google and nothing reads the wall clock.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import push_body
from mercari_ops.common.tests import test_platform as platform_tests
from mercari_ops.inbox.auth import (
    CertificatesUnavailable,
    GoogleCertificates,
    OidcVerifier,
    PushAuthRefused,
    oidc_verifier_use,
)
from mercari_ops.inbox.models import DeadLetter, InboxEvent

from .fake_google import AUDIENCE, SERVICE_ACCOUNT, CertificateServer, SigningKey, google_claims, id_token, signing_key

ROOT = Path(__file__).resolve().parents[3]
NOW = 1_790_000_000.0  # 2026-09-21
SKEW = 10


class ManualClock:
    def __init__(self, now: float = NOW):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return ManualClock()


@pytest.fixture
def certs():
    with CertificateServer([signing_key("k1")], max_age=3600) as server:
        yield server


@pytest.fixture
def verifier(certs, clock):
    return OidcVerifier(certificates=GoogleCertificates(certs.url, clock=clock), audiences=[AUDIENCE],
                        service_accounts=[SERVICE_ACCOUNT], clock_skew_seconds=SKEW, clock=clock)


def token(now: float = NOW, key: SigningKey | None = None, **claims) -> str:
    return id_token(key or signing_key("k1"), google_claims(now=now, **claims))


def _tampered() -> str:
    header, claims, signature = token().split(".")
    other_claims = token(email="intruder@evil.example.com").split(".")[1]
    return f"{header}.{other_claims}.{signature}"


# (token, what the refusal names)
REFUSALS = {
    "expired": (lambda: token(NOW - 7200), "expired"),
    "expired beyond the leeway": (lambda: token(NOW - 3600 - SKEW - 1), "expired"),
    "issued in the future": (lambda: token(NOW + 60), "issued in the future"),
    "another audience": (lambda: token(audience="https://other.example.com/pubsub/push"), "audience"),
    "no audience": (lambda: token(aud=None), "audience"),
    "another issuer": (lambda: token(iss="https://evil.example.com"), "issuer"),
    "another service account": (lambda: token(email="someone@other.iam.gserviceaccount.com"), "service account"),
    "email not verified": (lambda: token(email_verified=False), "service account"),
    "email_verified missing": (lambda: token(email_verified=None), "service account"),
    "signed by another key with a known kid": (lambda: id_token(SigningKey("k1"), google_claims(now=NOW)),
                                               "signature"),
    "claims changed after signing": (_tampered, "signature"),
    "not RS256": (lambda: id_token(signing_key("k1"), google_claims(now=NOW), header={"alg": "HS256"}),
                  "signature"),
    "unknown key": (lambda: token(key=signing_key("k-not-served")), "signature"),
    "the static token": (lambda: "dev-pubsub-token", "malformed"),
    "three dots of nothing": (lambda: "a.b.c", "malformed"),
    "no exp": (lambda: token(exp=None), "malformed"),
}


def test_a_google_token_for_us_verifies(verifier):
    verifier.verify(token())  # no exception


@pytest.mark.parametrize("issuer", ["https://accounts.google.com", "accounts.google.com"])
def test_both_google_issuers_are_accepted(verifier, issuer):
    verifier.verify(token(iss=issuer))


def test_the_clock_skew_leeway_applies_to_exp_and_iat(verifier):
    verifier.verify(token(NOW - 3600 - SKEW))  # expired exactly SKEW seconds ago
    verifier.verify(token(NOW + SKEW))  # issued SKEW seconds ahead of our clock


def test_one_of_several_audiences_is_accepted(certs, clock):
    verifier = OidcVerifier(certificates=GoogleCertificates(certs.url, clock=clock), clock=clock,
                            audiences=["https://a.example.com/push", AUDIENCE], service_accounts=[SERVICE_ACCOUNT])
    verifier.verify(token())


@pytest.mark.parametrize("make, named", REFUSALS.values(), ids=REFUSALS.keys())
def test_each_wrong_token_is_refused_naming_what_failed(verifier, make, named):
    with pytest.raises(PushAuthRefused) as refused:
        verifier.verify(make())
    assert refused.value.reason.startswith(named) or named in refused.value.reason


def test_certificates_are_fetched_once_while_fresh_and_again_when_stale(verifier, certs, clock):
    # given: the server says its certificates stay fresh for an hour
    for n in range(5):
        verifier.verify(token(sub=f"sub-{n}"))
    assert certs.hits == 1
    # when: the hour passes and a token not seen before arrives
    clock.advance(3601)
    verifier.verify(token(clock.now))
    # then
    assert certs.hits == 2


def test_a_verified_token_is_not_verified_again_until_it_expires(verifier, clock):
    pushed = token()
    for _ in range(20):
        verifier.verify(pushed)
    assert verifier.signature_checks == 1
    clock.advance(3600 + SKEW)
    verifier.verify(pushed)  # at the last second of the leeway: still good, from the cache
    clock.advance(1)
    with pytest.raises(PushAuthRefused, match="expired"):
        verifier.verify(pushed)
    assert verifier.signature_checks == 1


def test_a_new_key_is_fetched_when_a_token_names_it_at_most_once_per_few_seconds(verifier, certs, clock):
    # given: tokens of key k1, certificates fetched
    verifier.verify(token())
    # when: Google rotates to k2 (k1 withdrawn) and a k2 token arrives a second after the last fetch
    certs.keys = [signing_key("k2")]
    clock.advance(1)
    with pytest.raises(PushAuthRefused, match="k2"):
        verifier.verify(token(clock.now, key=signing_key("k2")))
    assert certs.hits == 1  # too soon to fetch again
    # then: a few seconds later the unknown kid makes it fetch, and the token verifies
    clock.advance(5)
    verifier.verify(token(clock.now, key=signing_key("k2"), sub="after-rotation"))
    assert certs.hits == 2
    # and a k1 token not seen before is now refused (without another fetch so soon)
    with pytest.raises(PushAuthRefused, match="k1"):
        verifier.verify(token(clock.now, sub="old-key"))
    assert certs.hits == 2


def test_without_certificates_it_is_unavailable_and_with_stale_ones_it_keeps_them(verifier, certs, clock):
    # given: the certificate server fails before anything was fetched
    certs.status = 500
    with pytest.raises(CertificatesUnavailable):
        verifier.verify(token())
    # when it recovers (after the retry interval), then fails again once they are stale
    certs.status = 200
    clock.advance(6)
    verifier.verify(token(clock.now))
    certs.status = 500
    clock.advance(3601)
    # then the stale certificates still verify a new token (a fetch was tried)
    hits = certs.hits
    verifier.verify(token(clock.now, sub="while-down"))
    assert certs.hits == hits + 1


def test_the_verified_token_cache_is_bounded(certs, clock):
    verifier = OidcVerifier(certificates=GoogleCertificates(certs.url, clock=clock), clock=clock,
                            audiences=[AUDIENCE], service_accounts=[SERVICE_ACCOUNT], max_cached_tokens=4)
    tokens = [token(sub=f"s-{n}") for n in range(10)]
    for pushed in tokens:
        verifier.verify(pushed)
    assert verifier.signature_checks == 10
    verifier.verify(tokens[-1])  # recent: still remembered
    assert verifier.signature_checks == 10
    verifier.verify(tokens[0])  # evicted: verified again
    assert verifier.signature_checks == 11


# --- the endpoint ----------------------------------------------------------------------------------


@pytest.fixture
def oidc(settings, certs, clock):
    """The push endpoint on PUBSUB_AUTH=oidc, its verifier built from settings on the manual clock."""
    settings.PUBSUB_AUTH = "oidc"
    settings.PUBSUB_OIDC_AUDIENCE = [AUDIENCE]
    settings.PUBSUB_OIDC_SERVICE_ACCOUNTS = [SERVICE_ACCOUNT]
    settings.PUBSUB_OIDC_CERTS_URL = certs.url
    settings.PUBSUB_OIDC_CLOCK_SKEW_SECONDS = SKEW
    verifier = OidcVerifier.from_settings(clock=clock)
    oidc_verifier_use(verifier)
    yield verifier
    oidc_verifier_use(None)


def _post(client, topic, body, authorization=None):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return client.post(f"/pubsub/push/{topic}", data=body, content_type="application/json", **extra)


@pytest.mark.django_db
def test_a_push_with_a_google_token_is_recorded(client, oidc, test_topic):
    name, calls, _ = test_topic
    response = _post(client, name, push_body({"event_id": "o-1"}), f"Bearer {token()}")
    assert response.status_code == 204
    assert calls == [{"event_id": "o-1"}]


@pytest.mark.django_db
@pytest.mark.parametrize("make, named", REFUSALS.values(), ids=REFUSALS.keys())
def test_a_push_with_a_wrong_token_is_401_naming_it_and_stores_nothing(client, oidc, test_topic, make, named):
    name, calls, _ = test_topic
    response = _post(client, name, push_body({"event_id": "o-2"}), f"Bearer {make()}")
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
    assert named in response.json()["error"]
    assert not calls and not InboxEvent.objects.exists() and not DeadLetter.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("authorization", [None, "", "Token abc", "Bearer "])
def test_a_push_without_a_bearer_token_is_401(client, oidc, test_topic, authorization):
    response = _post(client, test_topic[0], push_body({"event_id": "o-3"}), authorization)
    assert response.status_code == 401
    assert response.json()["field"] == "Authorization"
    assert not InboxEvent.objects.exists()


@pytest.mark.django_db
def test_the_static_token_is_refused_under_oidc(client, oidc, settings, test_topic):
    response = _post(client, test_topic[0], push_body({"event_id": "o-4"}), f"Bearer {settings.PUBSUB_PUSH_TOKEN}")
    assert response.status_code == 401
    assert response.json() == {"error": "OIDC token refused: malformed: not a JWT", "field": "Authorization"}
    assert not InboxEvent.objects.exists()


@pytest.mark.django_db
def test_repeated_pushes_with_one_token_verify_it_once(client, oidc, certs, test_topic):
    name, calls, _ = test_topic
    authorization = f"Bearer {token()}"
    for n in range(5):
        assert _post(client, name, push_body({"event_id": f"o-5-{n}"}), authorization).status_code == 204
    assert len(calls) == 5
    assert (oidc.signature_checks, certs.hits) == (1, 1)


@pytest.mark.django_db
def test_a_push_while_the_certificates_cannot_be_fetched_is_503(client, oidc, certs, test_topic):
    certs.status = 503
    response = _post(client, test_topic[0], push_body({"event_id": "o-6"}), f"Bearer {token()}")
    assert response.status_code == 503
    assert response.json()["field"] == "Authorization"
    assert not InboxEvent.objects.exists() and not DeadLetter.objects.exists()


def test_changing_an_oidc_setting_rebuilds_the_verifier(settings):
    from mercari_ops.inbox.auth import oidc_verifier

    settings.PUBSUB_OIDC_AUDIENCE = ["https://first.example.com"]
    first = oidc_verifier()
    assert first.audiences == {"https://first.example.com"}
    settings.PUBSUB_OIDC_AUDIENCE = ["https://second.example.com"]
    assert oidc_verifier().audiences == {"https://second.example.com"}


# --- settings ------------------------------------------------------------------------------------

PRODUCTION = {
    **platform_tests.PRODUCTION,
    "PUBSUB_AUTH": "oidc",
    "PUBSUB_OIDC_AUDIENCE": "https://ops.example.com/pubsub/push/loyalty-activity,https://ops.example.com/pubsub/push",
    "PUBSUB_OIDC_SERVICE_ACCOUNTS": SERVICE_ACCOUNT,
}


def _manage(*args, **env):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("PUBSUB_", "DJANGO_SECRET_KEY", "ALLOWED_HOSTS"))}
    full.update({k: v for k, v in env.items() if v is not None})
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=full, capture_output=True, text=True)


def test_production_on_oidc_passes_check_deploy_without_a_static_token():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stderr + result.stdout
    script = ("import django; django.setup(); from django.conf import settings; import json; "
              "print(json.dumps([settings.PUBSUB_AUTH, settings.PUBSUB_OIDC_AUDIENCE, settings.PUBSUB_PUSH_TOKEN]))")
    shown = _manage("shell", "-c", script, **PRODUCTION)
    assert json.loads(shown.stdout.strip().splitlines()[-1]) == [
        "oidc", PRODUCTION["PUBSUB_OIDC_AUDIENCE"].split(","), None]


@pytest.mark.parametrize("missing", ["PUBSUB_OIDC_AUDIENCE", "PUBSUB_OIDC_SERVICE_ACCOUNTS"])
def test_production_on_oidc_refuses_to_start_without_audience_or_service_accounts(missing):
    result = _manage("check", **{**PRODUCTION, missing: None})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr


def test_an_unknown_pubsub_auth_refuses_to_start():
    result = _manage("check", **{**PRODUCTION, "PUBSUB_AUTH": "jwt"})
    assert result.returncode != 0
    assert "PUBSUB_AUTH must be token or oidc" in result.stderr
