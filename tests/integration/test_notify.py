"""systemd's notify protocol, against a datagram socket the test owns as $NOTIFY_SOCKET.

READY=1 comes once every listener accepts connections (a gateway with two
worker processes: once, after both); WATCHDOG=1 keeps coming at half of
$WATCHDOG_USEC; SIGTERM brings STOPPING=1.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.integration.test_gateway import settings


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.messages: list[dict[str, str]] = []

    def collect(self, seconds: float) -> list[dict[str, str]]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.messages.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
        return self.messages

    def wait_for(self, key: str, seconds: float = 20.0) -> dict[str, str]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = [message for message in self.messages if key in message]
            if found:
                return found[0]
            self.collect(0.2)
        raise AssertionError(f"no {key} in {self.messages}")


@pytest.fixture
def notify(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", str(listener.path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    yield listener
    listener.sock.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_ready_once_listening_watchdog_and_stopping(
    tmp_path: Path, _responder: FaultResponder, stores: Stores, notify: NotifySocket, workers: int
) -> None:
    text = settings(_responder.nameserver, "", "classic", f"workers = {workers}", store=stores.url(tmp_path))
    gateway = GatewayProcess(tmp_path / "gw", text)
    gateway.start()
    try:
        ready = notify.wait_for("READY")
        assert ready["READY"] == "1" and ready["STATUS"].startswith("serving: gateway")
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as client:
            assert client.recv(100).startswith(b"220 ")  # it listened when it said so
        notify.collect(1.5)
        assert sum(1 for message in notify.messages if "READY" in message) == 1  # once, not once per worker
        assert sum(1 for message in notify.messages if message.get("WATCHDOG") == "1") >= 4  # every 0.2 s
        assert gateway.proc is not None
    finally:
        assert gateway.stop() == 0
    notify.collect(0.5)
    assert any(message.get("STOPPING") == "1" for message in notify.messages)
