"""The test infrastructure itself: the fault server, the token server and the latency proxy."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path

import urllib3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from testbed.fault_server import FaultServer, Reply
from testbed.latency_proxy import LatencyProxy
from testbed.token_server import TokenServer


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_fault_server_stops_with_idle_and_slow_connections_open() -> None:
    before = threading.active_count()
    server = FaultServer().start()
    server.script("/slow", Reply(200, delay=30))
    idle = socket.create_connection(("127.0.0.1", server.port))  # an idle keep-alive client
    pool = urllib3.HTTPConnectionPool("127.0.0.1", server.port, retries=False)
    errors: list[BaseException] = []

    def call_slow() -> None:
        try:
            pool.request("GET", "/slow", timeout=60)
        except Exception as exc:  # noqa: BLE001 - the server goes away under it
            errors.append(exc)

    slow = threading.Thread(target=call_slow)
    slow.start()
    time.sleep(0.1)
    start = time.monotonic()
    server.stop()
    assert time.monotonic() - start < 3
    slow.join(5)
    idle.close()
    pool.close()
    assert not slow.is_alive()
    assert threading.active_count() <= before
    assert len(errors) == 1


def test_fault_server_scripts_replies_in_order_then_repeats_the_last() -> None:
    with FaultServer() as server:
        server.script("/p", Reply(500), Reply(201, {"X-A": "1"}, b"body"))
        http = urllib3.PoolManager(retries=False)
        statuses = [http.request("GET", f"{server.url}/p?q=1").status for _ in range(3)]
        assert statuses == [500, 201, 201]
        assert http.request("GET", f"{server.url}/other").status == 404
        assert [r.path for r in server.requests] == ["/p?q=1"] * 3 + ["/other"]


def test_token_server_issues_es256_jwts_signed_by_the_bundle_certificate(tmp_path: Path) -> None:
    with TokenServer(tmp_path, users={"u": "p"}, private_prefixes=("priv/",)) as ts:
        http = urllib3.PoolManager(retries=False)
        auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
        query = f"service={ts.service}&scope=repository:a/b:pull,push&scope=repository:priv/c:pull"
        resp = http.request("GET", f"{ts.realm}?{query}", headers=auth)
        assert resp.status == 200
        doc = json.loads(resp.data)
        assert doc["expires_in"] == 300
        header_b64, claims_b64, sig_b64 = doc["token"].split(".")
        header = json.loads(_b64url_decode(header_b64))
        claims = json.loads(_b64url_decode(claims_b64))
        bundle = x509.load_pem_x509_certificate(ts.cert_path.read_bytes())
        assert base64.b64decode(header["x5c"][0]) == bundle.public_bytes(serialization.Encoding.DER)
        assert header["alg"] == "ES256"
        sig = _b64url_decode(sig_b64)
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        public = bundle.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        public.verify(der, f"{header_b64}.{claims_b64}".encode(), ec.ECDSA(hashes.SHA256()))  # raises if bad
        assert (claims["iss"], claims["aud"], claims["sub"]) == (ts.issuer, ts.service, "u")
        assert claims["access"] == [
            {"type": "repository", "name": "a/b", "actions": ["pull", "push"]},
            {"type": "repository", "name": "priv/c", "actions": ["pull"]},
        ]
        anonymous = json.loads(http.request("GET", f"{ts.realm}?{query}").data)["token"]
        assert json.loads(_b64url_decode(anonymous.split(".")[1]))["access"] == [
            {"type": "repository", "name": "a/b", "actions": ["pull"]}
        ]
        bad = {"Authorization": "Basic " + base64.b64encode(b"u:wrong").decode()}
        assert http.request("GET", f"{ts.realm}?{query}", headers=bad).status == 401
        assert [r.status for r in ts.requests] == [200, 200, 401]


def test_latency_proxy_delays_counts_and_exits(tmp_path: Path) -> None:
    with FaultServer() as upstream:
        upstream.script("/v2/x/manifests/t", Reply(200))
        proxy = LatencyProxy(upstream.host, latency=0.05).start()
        pid = proxy.pid
        assert pid is not None
        try:
            pool = urllib3.HTTPConnectionPool("127.0.0.1", proxy.port, retries=False)
            times = []
            for _ in range(3):
                start = time.monotonic()
                assert pool.request("HEAD", "/v2/x/manifests/t").status == 200
                times.append(time.monotonic() - start)
            pool.close()
            assert times[0] >= 0.1  # the new connection pays one more latency
            assert all(0.05 <= t < 0.09 for t in times[1:])
            stats = proxy.stats()
            assert stats["requests"] == 3
            assert stats["by_kind"] == {"HEAD manifests": 3}
            assert stats["connections"] == 1
        finally:
            proxy.stop()
        time.sleep(0.05)
        try:
            os.kill(pid, 0)
            alive = True
        except ProcessLookupError:
            alive = False
        assert not alive
