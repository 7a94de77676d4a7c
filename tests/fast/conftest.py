"""The fast tier: in-memory fakes only (tests/fakes.py). No test here may open a socket: ``connect``
(and ``connect_ex``, ``create_connection``) raise for every test of this directory."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest


class SocketUsedError(AssertionError):
    """A fast test tried to reach the network."""


def _refuse(*args: Any, **kwargs: Any) -> NoReturn:
    raise SocketUsedError(f"the fast tier opens no sockets (connect to {args[1:] or kwargs})")


@pytest.fixture(autouse=True)
def _no_sockets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)
    return
