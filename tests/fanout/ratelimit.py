"""An upstream with Docker Hub's rate-limit headers: a loopback proxy in front of the test registry that
adds ``ratelimit-limit`` / ``ratelimit-remaining`` (and the source) to every manifest answer, since the
distribution registry sends none. Like Docker Hub, it counts a manifest GET as a pull and a HEAD as
none. Test infrastructure, built on the fault server's loopback server."""

from __future__ import annotations

import threading

import urllib3

from testbed.fault_server import Recorded, Reply, ServerBase

HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})
FORWARDED = ("accept", "authorization", "user-agent")


class RateLimitedUpstream(ServerBase):
    """``with RateLimitedUpstream(registry.url, limit=100, remaining=11) as hub: hub.url``"""

    def __init__(self, target: str, *, limit: int, remaining: int, window_seconds: int = 21600) -> None:
        super().__init__()
        self.target = target.rstrip("/")
        self.limit = limit
        self.remaining = remaining
        self.window_seconds = window_seconds
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._http = urllib3.PoolManager(
            maxsize=4, retries=False, timeout=urllib3.Timeout(connect=5, read=30)
        )

    def __enter__(self) -> RateLimitedUpstream:
        self.start()
        return self

    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def reply_for(self, rec: Recorded) -> Reply:
        headers = {name: value for name, value in rec.headers.items() if name in FORWARDED}
        resp = self._http.request(rec.method, self.target + rec.path, headers=headers, redirect=False)
        out = {name: value for name, value in resp.headers.items() if name.lower() not in HOP_BY_HOP}
        if "/manifests/" in rec.path:
            with self._lock:
                if rec.method == "GET" and resp.status == 200:
                    self.remaining = max(0, self.remaining - 1)
            out["ratelimit-limit"] = f"{self.limit};w={self.window_seconds}"
            out["ratelimit-remaining"] = f"{self.remaining};w={self.window_seconds}"
            out["docker-ratelimit-source"] = "192.0.2.10"
        return Reply(resp.status, out, b"" if rec.method == "HEAD" else resp.data)
