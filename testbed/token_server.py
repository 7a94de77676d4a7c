"""A Bearer token server for the registry's ``auth: token`` (test and demo infrastructure).

Implements the distribution token spec (``GET /token?service=…&scope=…[&scope=…]``, optional Basic
credentials) and issues ES256 JWTs that distribution 2.8 verifies: the header carries ``x5c`` with a
self-signed certificate, which is also written to ``rootcertbundle`` (``registry/auth/token/token.go``:
``parseAndVerifyCertChain`` checks the chain against the bundle, then the signature with the leaf key).

    with TokenServer(tmp_path, users={"u": "p"}) as ts:
        with RegistryServer(tmp_path / "reg", token=ts.token_auth()) as reg:
            ...
        ts.requests   # every token request: scopes, account, whether credentials were valid

Knobs for tests: ``expire_next(n)`` issues n tokens the registry will reject as expired (while the
response still claims a normal ``expires_in``), ``fail_next(status, n)``, ``private_prefixes``
(anonymous gets no access there), ``single_scope`` (grant only the first scope of a request).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from testbed.fault_server import Recorded, Reply, ServerBase, json_reply
from testbed.registry import TokenAuth


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class TokenRequest:
    scopes: tuple[str, ...]
    service: str
    account: str | None
    user: str | None  # the authenticated user, None when anonymous
    status: int


class TokenServer(ServerBase):
    def __init__(
        self,
        workdir: Path,
        *,
        issuer: str = "ptc-testbed-issuer",
        service: str = "ptc-testbed-registry",
        users: dict[str, str] | None = None,
        anonymous: bool = True,
        expires_in: int = 300,
        private_prefixes: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.workdir = Path(workdir)
        self.issuer = issuer
        self.service = service
        self.users = dict(users or {})
        self.anonymous = anonymous
        self.expires_in = expires_in
        self.private_prefixes = tuple(private_prefixes)
        self.single_scope = False
        self.requests: list[TokenRequest] = []
        self._lock = threading.Lock()
        self._expire_next = 0
        self._fail_next: list[int] = []
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ptc-sync testbed token signer")])
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )
        self.cert_path = self.workdir / "token-rootcertbundle.pem"

    # -- lifecycle and wiring --------------------------------------------------------------------------

    def start(self) -> TokenServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        super().start()
        return self

    def __enter__(self) -> TokenServer:
        return self.start()

    @property
    def realm(self) -> str:
        return f"{self.url}/token"

    def token_auth(self) -> TokenAuth:
        """What RegistryServer(token=…) needs; start the token server first (the realm has its port)."""
        return TokenAuth(
            realm=self.realm, service=self.service, issuer=self.issuer, rootcertbundle=self.cert_path
        )

    # -- knobs ----------------------------------------------------------------------------------------

    def expire_next(self, n: int = 1) -> None:
        with self._lock:
            self._expire_next += n

    def fail_next(self, status: int, n: int = 1) -> None:
        with self._lock:
            self._fail_next += [status] * n

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- tokens ---------------------------------------------------------------------------------------

    def sign(self, claims: dict[str, object]) -> str:
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self._cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def _authenticate(self, rec: Recorded) -> tuple[str | None, bool]:
        """(user, ok): ok is False when credentials were given and are wrong."""
        auth = rec.header("Authorization") or ""
        if not auth.lower().startswith("basic "):
            return None, True
        try:
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None, False
        if self.users.get(user) == password:
            return user, True
        return None, False

    def _grant(self, scope: str, user: str | None) -> dict[str, object] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        if user is None:
            if any(name.startswith(p) for p in self.private_prefixes):
                return None
            wanted = [a for a in wanted if a == "pull"]
        if not wanted:
            return None
        return {"type": "repository", "name": name, "actions": wanted}

    def record(self, rec: Recorded) -> None:
        return None

    def reply_for(self, rec: Recorded) -> Reply:
        parts = urlsplit(rec.path)
        if parts.path != "/token" or rec.method != "GET":
            return json_reply(404, {"errors": [{"code": "NOT_FOUND"}]})
        query = parse_qs(parts.query)
        scopes = tuple(s for value in query.get("scope", []) for s in value.split(" ") if s)
        service = (query.get("service") or [""])[0]
        accounts = query.get("account")
        account = accounts[0] if accounts else None
        user, ok = self._authenticate(rec)
        with self._lock:
            fail = self._fail_next.pop(0) if self._fail_next else None
            expired = self._expire_next > 0
            if expired:
                self._expire_next -= 1
        status = 200
        if fail is not None:
            status = fail
        elif not ok or (user is None and not self.anonymous):
            status = 401
        elif service != self.service:
            status = 400
        with self._lock:
            self.requests.append(TokenRequest(scopes, service, account, user, status))
        if status != 200:
            headers = {"Retry-After": "1"} if status == 429 else {}
            return json_reply(status, {"details": f"token request refused ({status})"}, headers)
        granted = [g for g in (self._grant(s, user) for s in scopes[: 1 if self.single_scope else None]) if g]
        now = int(dt.datetime.now(dt.UTC).timestamp())
        exp = now - 600 if expired else now + self.expires_in
        claims: dict[str, object] = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": exp,
            "nbf": now - 900 if expired else now - 5,
            "iat": now - 900 if expired else now,
            "jti": _b64url(os.urandom(12)),
            "access": granted,
        }
        token = self.sign(claims)
        issued_at = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        return json_reply(
            200,
            {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued_at},
        )
