"""A delaying TCP proxy on loopback: every request reaches the target ``latency`` seconds late (bench tool).

It models a network link: bytes from the client are forwarded ``latency`` after they arrive (order
kept, so a request costs one latency however it is split), and opening a connection costs one more
latency (the handshake a real link pays), which is what connection reuse saves. Responses pass
straight back. The proxy also counts the HTTP requests it forwards (method and kind of path), so a
benchmark can count upstream requests without trusting the client under test.

It runs in its own process (its own interpreter lock: it must not slow the client it measures):

    with LatencyProxy("127.0.0.1:5000", latency=0.05) as proxy:
        proxy.url       # http://127.0.0.1:PORT
        proxy.stats()   # {"requests": n, "by_kind": {"HEAD manifests": n, ...}, "connections": n, ...}
        proxy.reset()
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import subprocess
import sys
import threading
from types import TracebackType
from typing import IO, Any


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.connections = 0
        self.opaque_connections = 0  # non-HTTP traffic (a TLS probe, say)
        self.by_kind: dict[str, int] = {}

    def count(self, method: str, target: str) -> None:
        path = target.split("?", 1)[0]
        if "/manifests/" in path:
            kind = "manifests"
        elif path.endswith("/tags/list"):
            kind = "tags"
        elif "/blobs/" in path:
            kind = "blobs"
        elif path.rstrip("/") == "/v2":
            kind = "ping"
        else:
            kind = "other"
        with self.lock:
            self.requests += 1
            key = f"{method} {kind}"
            self.by_kind[key] = self.by_kind.get(key, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "requests": self.requests,
                "connections": self.connections,
                "opaque_connections": self.opaque_connections,
                "by_kind": dict(self.by_kind),
            }


class _RequestParser:
    """Finds request boundaries in a client→server HTTP/1.1 byte stream (no chunked request bodies)."""

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.buf = b""
        self.skip = 0
        self.opaque = False

    def feed(self, data: bytes) -> None:
        if self.opaque:
            return
        self.buf += data
        while True:
            if self.skip:
                take = min(self.skip, len(self.buf))
                self.buf, self.skip = self.buf[take:], self.skip - take
                if self.skip:
                    return
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > 65536 or (self.buf and not self.buf[:1].isalpha()):
                    self._go_opaque()
                return
            head, self.buf = self.buf[:end], self.buf[end + 4 :]
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
                self._go_opaque()
                return
            self.counter.count(parts[0].decode("latin-1"), parts[1].decode("latin-1"))
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    with contextlib.suppress(ValueError):
                        self.skip = int(value.strip())

    def _go_opaque(self) -> None:
        self.opaque = True
        self.buf = b""
        with self.counter.lock:
            self.counter.opaque_connections += 1


class _Upstream(asyncio.Protocol):
    """Server → client: straight back."""

    def __init__(self, link: _Link) -> None:
        self.link = link

    def data_received(self, data: bytes) -> None:
        if self.link.client is not None and not self.link.client.is_closing():
            self.link.client.write(data)

    def eof_received(self) -> bool | None:
        if self.link.client is not None and self.link.client.can_write_eof():
            self.link.client.write_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.link.close()


class _Link(asyncio.Protocol):
    """Client → server, each chunk forwarded ``latency`` after it arrived (one timer, order kept)."""

    def __init__(self, target: tuple[str, int], latency: float, counter: _Counter) -> None:
        self.loop = asyncio.get_running_loop()
        self.target = target
        self.latency = latency
        self.counter = counter
        self.parser = _RequestParser(counter)
        self.client: asyncio.Transport | None = None
        self.upstream: asyncio.Transport | None = None
        self.queue: collections.deque[tuple[float, bytes]] = collections.deque()  # b"" marks EOF
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.client = transport
        with self.counter.lock:
            self.counter.connections += 1
        # opening a connection costs one latency, like the handshake on a real link
        self.loop.call_later(self.latency, lambda: self.loop.create_task(self._connect()))

    async def _connect(self) -> None:
        if self.closed:
            return
        try:
            transport, _ = await self.loop.create_connection(lambda: _Upstream(self), *self.target)
        except OSError:
            self.close()
            return
        self.upstream = transport
        # bytes that arrived during the handshake travel after it: the first request pays both
        ready = self.loop.time() + self.latency
        self.queue = collections.deque((max(due, ready), data) for due, data in self.queue)
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def data_received(self, data: bytes) -> None:
        self.parser.feed(data)
        self._enqueue(data)

    def eof_received(self) -> bool | None:
        self._enqueue(b"")
        return True  # keep the client side open for the response

    def _enqueue(self, data: bytes) -> None:
        self.queue.append((self.loop.time() + self.latency, data))
        if self.timer is None and self.upstream is not None:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def _flush(self) -> None:
        self.timer = None
        up = self.upstream
        if up is None or up.is_closing():
            return
        now = self.loop.time()
        while self.queue and self.queue[0][0] <= now:
            _, data = self.queue.popleft()
            if data:
                up.write(data)
            elif up.can_write_eof():
                up.write_eof()
        if self.queue:
            self.timer = self.loop.call_at(self.queue[0][0], self._flush)

    def connection_lost(self, exc: Exception | None) -> None:
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        for t in (self.client, self.upstream):
            if t is not None:
                t.close()


async def _serve(
    target_host: str, target_port: int, latency: float, counter: _Counter, stop: asyncio.Event
) -> None:
    loop = asyncio.get_running_loop()
    links: list[_Link] = []

    def factory() -> _Link:
        link = _Link((target_host, target_port), latency, counter)
        links.append(link)
        if len(links) > 4096:
            links[:] = [x for x in links if not x.closed]
        return link

    server = await loop.create_server(factory, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    async with server:
        await stop.wait()
        server.close()
        for link in links:
            link.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, help="host:port to forward to")
    parser.add_argument("--latency-ms", type=float, required=True)
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    counter = _Counter()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def commands() -> None:
        for line in sys.stdin:
            cmd = line.strip()
            if cmd == "stats":
                print(json.dumps(counter.snapshot()), flush=True)
            elif cmd == "reset":
                with counter.lock:
                    counter.reset()
                print("{}", flush=True)
            elif cmd == "quit":
                break
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=commands, daemon=True).start()
    try:
        loop.run_until_complete(_serve(host, int(port), args.latency_ms / 1000, counter, stop))
    finally:
        loop.close()
    return 0


class LatencyProxy:
    def __init__(self, target: str, latency: float, *, start_timeout: float = 10.0) -> None:
        self.target = target
        self.latency = latency
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> LatencyProxy:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed.latency_proxy",
                "--target",
                self.target,
                "--latency-ms",
                str(self.latency * 1000),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        line = self._readline(self.start_timeout)
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"latency proxy did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def _readline(self, timeout: float) -> str:
        proc = self._proc
        if proc is None or proc.stdout is None:
            raise RuntimeError("latency proxy not running")
        out: list[str] = []
        stdout: IO[str] = proc.stdout
        reader = threading.Thread(target=lambda: out.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not out:
            raise RuntimeError("latency proxy did not answer in time")
        return out[0].strip()

    def _command(self, cmd: str) -> dict[str, Any]:
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None:
                raise RuntimeError("latency proxy not running")
            proc.stdin.write(cmd + "\n")
            proc.stdin.flush()
            result: dict[str, Any] = json.loads(self._readline(5.0))
            return result

    def stats(self) -> dict[str, Any]:
        return self._command("stats")

    def reset(self) -> None:
        self._command("reset")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write("quit\n")
                    proc.stdin.flush()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
                proc.wait(timeout=5)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(_main())
