"""The guard itself: a fast test that reaches for the network fails."""

from __future__ import annotations

import socket
import urllib.request

import pytest

from tests.fast.conftest import SocketUsedError


def test_connect_raises() -> None:
    with socket.socket() as sock, pytest.raises(SocketUsedError):
        sock.connect(("127.0.0.1", 9))


def test_a_library_reaching_out_raises() -> None:
    with pytest.raises(SocketUsedError):
        urllib.request.urlopen("http://127.0.0.1:9/", timeout=1)
