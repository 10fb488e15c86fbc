"""`make run` (scripts/demo.py) in a network namespace of its own, so its fixed ports are its own.

It must answer on its ports, and a SIGTERM or SIGINT to it must end everything it
started: rdnsgate drained and gone, knotd gone, nothing left in the namespace.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.harness.postfix import netns

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("knotd") is None,
        reason="needs root, iproute2 and knotd (make test installs them)",
    ),
]

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
PROBE = "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=1).close()"


def _pids(namespace: str) -> set[int]:
    found = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True, check=True)
    return {int(pid) for pid in found.stdout.split()}


def _answers(namespace: str, port: int) -> bool:
    probe = ["ip", "netns", "exec", namespace, sys.executable, "-c", PROBE.format(port=port)]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_demo_serves_and_a_signal_ends_all_it_started(tmp_path: Path, signum: int) -> None:
    with netns("rdnsgate-demo") as namespace:
        log = (tmp_path / "demo.log").open("wb")
        demo = subprocess.Popen(
            ["ip", "netns", "exec", namespace, sys.executable, str(DEMO)],
            cwd=tmp_path,  # its ./var/ (Maildir, SQLite) goes here
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not (_answers(namespace, 2525) and _answers(namespace, 8080)):
                assert demo.poll() is None, (tmp_path / "demo.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "demo.log").read_text()
                time.sleep(0.3)
            assert len(_pids(namespace)) >= 3  # the demo, knotd, rdnsgate
            demo.send_signal(signum)  # `ip netns exec` runs the demo in its own process: the signal is the demo's
            assert demo.wait(timeout=30) == 0, (tmp_path / "demo.log").read_text()
            deadline = time.monotonic() + 10
            while _pids(namespace):
                assert time.monotonic() < deadline, f"left running: {_pids(namespace)}"
                time.sleep(0.2)
            assert "rdnsgate.supervisor: stopped" in (tmp_path / "demo.log").read_text()
        finally:
            for pid in _pids(namespace):
                os.kill(pid, signal.SIGKILL)
            if demo.poll() is None:
                demo.kill()
            demo.wait()
            log.close()
