import socket

import pytest


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Unit tests must not reach any socket: a test that needs one belongs in integration."""

    def refuse(*args, **kwargs):
        raise RuntimeError("network access in a unit test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
