"""A fault-injecting HTTP/1.1 server on loopback: scripted replies per request path (test infrastructure).

    with FaultServer() as srv:
        srv.script("/v2/x/manifests/1", Reply(503), Reply(200, {"Docker-Content-Digest": d}))
        srv.url      # http://127.0.0.1:PORT
        srv.requests # what arrived, headers included

Replies can be delayed (past a client's read timeout), reset the connection (RST), or be built by a
callable. A path's replies are consumed in order and the last one repeats. Unscripted paths get 404.
Handler sleeps wake up when the server stops; ``stop`` closes every open connection and joins every
handler thread, so nothing outlives the ``with`` block.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar, Final

import urllib3


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0  # seconds before the status line is sent
    reset: bool = False  # answer with a TCP RST instead of HTTP
    body_delay: float = 0.0  # seconds between the headers and the body
    drip: float = 0.0  # seconds between the body's bytes (sent one at a time): a slow-loris body


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-cased names
    server: str  # the server's host:port

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Responder = Callable[[Recorded], Reply]


# not passed back from the registry a request was forwarded to: the server frames its own answer
HOP_HEADERS: Final = frozenset({"connection", "transfer-encoding", "keep-alive", "content-length", "date"})


def forward(http: urllib3.PoolManager, base_url: str, rec: Recorded, *, headers: frozenset[str]) -> Reply:
    """``rec`` sent on to the server at ``base_url`` with only the request ``headers`` named (lower case),
    its answer as a Reply: redirects not followed, hop-by-hop headers dropped, a HEAD's Content-Length
    kept; 502 when that server cannot be reached."""
    try:
        resp = http.request(
            rec.method,
            base_url + rec.path,
            headers={k: v for k, v in rec.headers.items() if k in headers},
            redirect=False,
            preload_content=True,
        )
    except urllib3.exceptions.HTTPError:
        return Reply(502)
    out = {k: v for k, v in resp.headers.items() if k.lower() not in HOP_HEADERS}
    if rec.method == "HEAD" and "Content-Length" in resp.headers:
        out["Content-Length"] = resp.headers["Content-Length"]
    return Reply(resp.status, out, b"" if rec.method == "HEAD" else bytes(resp.data))


def json_reply(status: int, doc: Any, headers: Mapping[str, str] | None = None) -> Reply:
    return Reply(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(doc).encode())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection ends on its own
    server: LoopbackHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        return

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        rec = Recorded(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            server=f"127.0.0.1:{self.server.server_address[1]}",
        )
        self.server.owner.record(rec)
        reply = self.server.owner.reply_for(rec)
        if reply.delay and self.server.stopping.wait(reply.delay):
            self.close_connection = True
            return
        if reply.reset:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        self.send_response(reply.status)
        names = {k.lower() for k in reply.headers}
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if "content-length" not in names:
            self.send_header("Content-Length", str(len(reply.body)))
        self.end_headers()
        if self.command != "HEAD" and reply.body:
            if reply.body_delay and self.server.stopping.wait(reply.body_delay):
                self.close_connection = True
                return
            if not reply.drip:
                self.wfile.write(reply.body)
                return
            for i in range(len(reply.body)):
                try:
                    self.wfile.write(reply.body[i : i + 1])
                    self.wfile.flush()
                except OSError:  # the client gave up: that is the point
                    self.close_connection = True
                    return
                if self.server.stopping.wait(reply.drip):
                    self.close_connection = True
                    return

    do_GET = _handle
    do_HEAD = _handle
    do_POST = _handle
    do_PUT = _handle
    do_DELETE = _handle


class LoopbackHTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections so stopping never waits on an idle keep-alive."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, owner: _Owner, handler: type[BaseHTTPRequestHandler]) -> None:
        self.owner = owner
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        super().__init__(("127.0.0.1", 0), handler)

    def track(self, conn: socket.socket, *, add: bool) -> None:
        with self._conn_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Owner:
    """What a handler needs from the server object that owns it."""

    def record(self, rec: Recorded) -> None:
        raise NotImplementedError

    def reply_for(self, rec: Recorded) -> Reply:
        raise NotImplementedError


class ServerBase(_Owner):
    """start/stop/context manager for a LoopbackHTTPServer run by one serving thread."""

    handler: ClassVar[type[BaseHTTPRequestHandler]] = _Handler

    def __init__(self) -> None:
        self._httpd: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def start(self) -> ServerBase:
        if self._httpd is not None:
            return self
        self._httpd = LoopbackHTTPServer(self, self.handler)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{type(self).__name__}"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd, self._thread = None, None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()  # joins the handler threads (block_on_close)
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> ServerBase:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class FaultServer(ServerBase):
    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._scripts: dict[tuple[str | None, str], list[Reply | Responder]] = {}
        self.requests: list[Recorded] = []
        self._in_flight = 0
        self.max_in_flight = 0

    def __enter__(self) -> FaultServer:
        self.start()
        return self

    def script(self, path: str, *replies: Reply | Responder, method: str | None = None) -> None:
        """Replies for ``path`` (exact, query included if given), consumed in order; the last repeats."""
        if not replies:
            raise ValueError("give at least one reply")
        with self._lock:
            self._scripts[(method, path)] = list(replies)

    def record(self, rec: Recorded) -> None:
        with self._lock:
            self.requests.append(rec)

    def reply_for(self, rec: Recorded) -> Reply:
        path_only = rec.path.split("?", 1)[0]
        with self._lock:
            queue = None
            for key in ((rec.method, rec.path), (None, rec.path), (rec.method, path_only), (None, path_only)):
                queue = self._scripts.get(key)
                if queue is not None:
                    break
            if queue is None:
                item: Reply | Responder = json_reply(404, {"errors": [{"code": "NOT_FOUND"}]})
            else:
                item = queue.pop(0) if len(queue) > 1 else queue[0]
        return item(rec) if callable(item) else item

    def requests_for(self, path: str, method: str | None = None) -> list[Recorded]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (r.path == path or r.path.split("?", 1)[0] == path)
                and (method is None or r.method == method)
            ]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()
            self._scripts.clear()


class GaugeServer(FaultServer):
    """A FaultServer that also measures how many requests it serves at the same time."""

    def reply_for(self, rec: Recorded) -> Reply:
        with self._lock:
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        try:
            reply = super().reply_for(rec)
            if reply.delay:  # hold the request here so the gauge sees it in flight
                self._httpd_wait(reply.delay)
                reply = Reply(
                    reply.status, reply.headers, reply.body, 0.0, reply.reset, reply.body_delay, reply.drip
                )
            return reply
        finally:
            with self._lock:
                self._in_flight -= 1

    def _httpd_wait(self, seconds: float) -> None:
        httpd = self._httpd
        if httpd is not None:
            httpd.stopping.wait(seconds)
