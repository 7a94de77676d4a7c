"""Runs the CNCF distribution registry (Debian's ``docker-registry``) on a free loopback port.

    with RegistryServer(tmp_path) as reg:
        reg.url        # http://127.0.0.1:PORT
        reg.host       # 127.0.0.1:PORT

Auth variants: anonymous, htpasswd Basic (``users={"name": "password"}``) and token
(``token=TokenAuth(realm=..., service=..., issuer=..., rootcertbundle=path)``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

REGISTRY_BINARY = "docker-registry"


class RegistryNotAvailableError(RuntimeError):
    pass


@dataclass(frozen=True)
class TokenAuth:
    realm: str
    service: str
    issuer: str
    rootcertbundle: Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def registry_binary() -> str:
    path = shutil.which(REGISTRY_BINARY)
    if path is None:
        raise RegistryNotAvailableError(
            "docker-registry is not on PATH: run `make system-deps` (apt-get install docker-registry)"
        )
    return path


class RegistryServer:
    def __init__(
        self,
        workdir: Path,
        *,
        users: dict[str, str] | None = None,
        token: TokenAuth | None = None,
        start_timeout: float = 15.0,
    ) -> None:
        if users and token:
            raise ValueError("choose htpasswd users or token auth, not both")
        self.workdir = Path(workdir)
        self.users = users or {}
        self.token = token
        self.start_timeout = start_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: Path = self.workdir / "registry.log"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _config(self) -> str:
        storage = self.workdir / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        lines = [
            "version: 0.1",
            "log:",
            "  level: warn",
            "  accesslog:",
            "    disabled: true",
            "storage:",
            "  filesystem:",
            f"    rootdirectory: {storage}",
            "  delete:",
            "    enabled: true",
            "  maintenance:",
            "    uploadpurging:",
            "      enabled: false",
            "http:",
            f"  addr: 127.0.0.1:{self.port}",
            "  secret: ptc-sync-testbed",
        ]
        if self.users:
            import bcrypt

            htpasswd = self.workdir / "htpasswd"
            htpasswd.write_text(
                "".join(
                    f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=4)).decode()}\n"
                    for user, pw in self.users.items()
                )
            )
            lines += ["auth:", "  htpasswd:", "    realm: ptc-testbed", f"    path: {htpasswd}"]
        elif self.token:
            lines += [
                "auth:",
                "  token:",
                f"    realm: {self.token.realm}",
                f"    service: {self.token.service}",
                f"    issuer: {self.token.issuer}",
                f"    rootcertbundle: {self.token.rootcertbundle}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> RegistryServer:
        binary = registry_binary()
        self.workdir.mkdir(parents=True, exist_ok=True)
        last_error: str = ""
        for _attempt in range(3):  # a free port can be taken between probe and bind: try another
            self.port = free_port()
            config = self.workdir / "config.yml"
            config.write_text(self._config())
            log = self._log.open("ab")
            self.proc = subprocess.Popen(
                [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            log.close()
            try:
                self._wait_ready()
                return self
            except RegistryNotAvailableError as exc:
                last_error = str(exc)
                self.stop()
        raise RegistryNotAvailableError(last_error)

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RegistryNotAvailableError(
                    f"docker-registry exited with {self.proc.returncode}: {self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/v2/", timeout=1) as resp:  # noqa: S310
                    if resp.status == 200:
                        return
            except urllib.error.HTTPError as exc:
                if exc.code == 401:  # auth enabled: the server answers, that is all we wait for
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RegistryNotAvailableError(f"docker-registry did not answer /v2/ in time: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> RegistryServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
