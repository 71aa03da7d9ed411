"""A stand-in for Google's side of Pub/Sub push authentication, for tests and the ingestion bench.

`SigningKey` is an RSA key with a self-signed X.509 certificate and a key ID, as Google rotates them;
`id_token` signs claims with it (RS256, via google-auth); `CertificateServer` serves the certificates in
Google's v1 format (a JSON object of key ID -> PEM certificate) with a Cache-Control max-age from a
local HTTP server on its own thread, and counts the fetches. Nothing reaches Google.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from google.auth import crypt, jwt

SERVICE_ACCOUNT = "pubsub-push@mercari-ops-test.iam.gserviceaccount.com"
AUDIENCE = "https://ops.example.com/pubsub/push"


class SigningKey:
    def __init__(self, kid: str):
        self.kid = kid
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{kid}.fake-google.test")])
        certificate = (  # fixed validity: the verifier reads only the public key, and no test reads the wall clock
            x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(int(kid.encode().hex(), 16) % (1 << 64) + 1)
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC)).not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
            .sign(key, hashes.SHA256())
        )
        self.certificate_pem = certificate.public_bytes(serialization.Encoding.PEM).decode()
        private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
        self.signer = crypt.RSASigner.from_string(private_pem, key_id=kid)


@cache
def signing_key(kid: str) -> SigningKey:
    """One key per key ID per process: generating an RSA key costs tens of milliseconds."""
    return SigningKey(kid)


def google_claims(*, now: float, audience: str = AUDIENCE, email: str = SERVICE_ACCOUNT,
                  lifetime: int = 3600, **overrides) -> dict:
    """The claims of a Pub/Sub push ID token issued at `now`; `overrides` replace or (None) drop claims."""
    claims = {"iss": "https://accounts.google.com", "aud": audience, "azp": "1094281739", "sub": "1094281739",
              "email": email, "email_verified": True, "iat": int(now), "exp": int(now) + lifetime}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def id_token(key: SigningKey, claims: dict, *, header: dict | None = None) -> str:
    return jwt.encode(key.signer, claims, header=header).decode()


class CertificateServer:
    """Serves {kid: PEM} of `keys` at /oauth2/v1/certs with `Cache-Control: public, max-age=<max_age>`."""

    def __init__(self, keys: list[SigningKey], *, max_age: int = 3600):
        self.keys = list(keys)
        self.max_age = max_age
        self.hits = 0
        self.status = 200
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                body = json.dumps({key.kid: key.certificate_pem for key in server.keys}).encode()
                self.send_response(server.status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Cache-Control", f"public, max-age={server.max_age}, must-revalidate, no-transform")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_port}/oauth2/v1/certs"
        # a short poll interval: shutdown() waits for it, once per test
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-google-certs", daemon=True)

    def __enter__(self) -> CertificateServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
