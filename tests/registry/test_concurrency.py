"""resolve_many: bounded workers, per-host caps, shared tokens, unreachable hosts, early close."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ptc_sync.models import ResolvedDigest, UpstreamKind, UpstreamRef
from ptc_sync.registry import NotFoundError, UpstreamUnavailableError
from testbed.fault_server import GaugeServer, Recorded, Reply, json_reply
from testbed.registry import free_port
from tests.registry.conftest import HUB, HUB_AUTH, ClientFactory, hub_ref
from tests.registry.test_client_faults import BEARER, DIGEST, OK_HEAD


@pytest.fixture
def gauge() -> Iterator[GaugeServer]:
    with GaugeServer() as server:
        yield server


def test_per_host_cap_holds_under_a_bigger_pool(gauge: GaugeServer, make_client: ClientFactory) -> None:
    client = make_client({HUB: gauge.url}, max_per_host=3)
    for i in range(4):
        gauge.script(f"/v2/r{i}/manifests/t", Reply(200, OK_HEAD.headers, delay=0.05))
    gauge.script("/v2/", Reply(200))
    items = [(hub_ref(f"r{i}"), "t") for i in range(4) for _ in range(6)]
    results = list(client.resolve_many(items, max_workers=16))
    assert len(results) == 24
    assert all(isinstance(r, ResolvedDigest) for _, _, r in results)
    assert gauge.max_in_flight == 3  # reached, never exceeded


def test_hosts_have_separate_caps(make_client: ClientFactory) -> None:
    with GaugeServer() as a, GaugeServer() as b:
        client = make_client({"quay.io": a.url, "ghcr.io": b.url}, max_per_host=2)
        for srv in (a, b):
            srv.script("/v2/x/manifests/t", Reply(200, OK_HEAD.headers, delay=0.05))
            srv.script("/v2/", Reply(200))
        refs = [UpstreamRef(h, "x", UpstreamKind.QUAY, "p") for h in ("quay.io", "ghcr.io")]
        start = time.monotonic()
        results = list(client.resolve_many([(r, "t") for r in refs for _ in range(8)], max_workers=8))
        elapsed = time.monotonic() - start
        assert len(results) == 16
        assert (a.max_in_flight, b.max_in_flight) == (2, 2)
        assert elapsed < 8 * 0.05 * 2  # the two hosts ran side by side


def test_one_token_request_is_shared_by_all_workers(gauge: GaugeServer, make_client: ClientFactory) -> None:
    client = make_client({HUB: gauge.url, HUB_AUTH: gauge.url})
    gauge.script("/v2/", Reply(401, {"WWW-Authenticate": BEARER}))
    gauge.script("/token", json_reply(200, {"token": "shared", "expires_in": 300}))

    def manifest(rec: Recorded) -> Reply:
        if rec.header("Authorization") == "Bearer shared":
            return Reply(200, OK_HEAD.headers, delay=0.01)
        return Reply(401, {"WWW-Authenticate": BEARER})

    for i in range(6):
        gauge.script(f"/v2/lib/r{i}/manifests/t", manifest)
    items = [(hub_ref(f"lib/r{i}"), "t") for i in range(6) for _ in range(5)]
    results = list(client.resolve_many(items, max_workers=12))
    assert all(isinstance(r, ResolvedDigest) and r.digest == DIGEST for _, _, r in results)
    token_requests = gauge.requests_for("/token")
    assert len(token_requests) == 1
    assert token_requests[0].path.count("scope=") == 6
    assert all(
        r.header("Authorization") == "Bearer shared" for r in gauge.requests if "/manifests/" in r.path
    )


def test_single_flight_token_without_preparation(gauge: GaugeServer, make_client: ClientFactory) -> None:
    """Direct resolve_digest calls from many threads on one repository fetch its token once."""
    client = make_client({HUB: gauge.url, HUB_AUTH: gauge.url})
    gauge.script("/token", json_reply(200, {"token": "one", "expires_in": 300}, {}))
    gauge.script(
        "/v2/lib/app/manifests/t",
        lambda rec: (
            OK_HEAD
            if rec.header("Authorization") == "Bearer one"
            else Reply(401, {"WWW-Authenticate": BEARER})
        ),
    )
    client.resolve_digest(hub_ref("lib/app"), "t")  # learn the challenge
    gauge.clear()
    gauge.script("/token", Reply(200, {"Content-Type": "application/json"}, b'{"token": "two"}', delay=0.1))
    gauge.script("/v2/lib/other/manifests/t", OK_HEAD)
    threads = [
        threading.Thread(target=client.resolve_digest, args=(hub_ref("lib/other"), "t")) for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gauge.requests_for("/token")) == 1


def test_unreachable_host_fails_its_tags_at_once(make_client: ClientFactory) -> None:
    with GaugeServer() as good:
        dead = f"http://127.0.0.1:{free_port()}"
        client = make_client({"quay.io": dead, HUB: good.url})
        good.script("/v2/", Reply(200))
        good.script("/v2/lib/ok/manifests/t", OK_HEAD)
        items = [(UpstreamRef("quay.io", f"x/r{i}", UpstreamKind.QUAY, "q"), "t") for i in range(20)]
        items.append((hub_ref("lib/ok"), "t"))
        items.append((hub_ref("lib/missing"), "t"))
        results = {(ref.host, ref.repository): r for ref, _, r in client.resolve_many(items, max_workers=8)}
    assert len(results) == 22
    for i in range(20):
        err = results[("quay.io", f"x/r{i}")]
        assert isinstance(err, UpstreamUnavailableError)
        assert f"quay.io/x/r{i}:t: not checked, host unreachable" in str(err)
    assert isinstance(results[(HUB, "lib/ok")], ResolvedDigest)
    assert isinstance(results[(HUB, "lib/missing")], NotFoundError)
    assert client.counts()["ping"] == 4 + 1  # 4 attempts at the dead host's probe, 1 at the good one
    assert client.manifest_head_count == 2  # nothing sent for the dead host's tags


def test_closing_the_iterator_early_stops_the_pool(gauge: GaugeServer, make_client: ClientFactory) -> None:
    client = make_client({HUB: gauge.url}, max_per_host=4)
    gauge.script("/v2/", Reply(200))
    gauge.script("/v2/lib/app/manifests/t", Reply(200, OK_HEAD.headers, delay=0.02))
    results = client.resolve_many([(hub_ref("lib/app"), "t")] * 200, max_workers=4)
    first = [next(results) for _ in range(3)]
    results.close()
    assert len(first) == 3
    assert len(gauge.requests_for("/v2/lib/app/manifests/t")) < 30  # the rest was never sent
    assert not [t for t in threading.enumerate() if t.name.startswith("ptc-registry")]  # pool joined


def test_empty_input_and_bad_worker_count(make_client: ClientFactory) -> None:
    client = make_client({})
    assert list(client.resolve_many([])) == []
    with pytest.raises(ValueError, match="max_workers"):
        list(client.resolve_many([(hub_ref("a/b"), "t")], max_workers=0))
