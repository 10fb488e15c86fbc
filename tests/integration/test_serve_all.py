"""`rdnsgate serve`: gateway, web app and monitor in one process, as `make run` starts them.

Refusals link to the check page, which explains the same client; the
monitor checks a watched server; one /metrics shows all three; SIGTERM stops
everything cleanly.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import GOOD, NO_PTR, settings, transact

pytestmark = pytest.mark.slow


def test_gateway_web_and_monitor_together(tmp_path: Path, _responder: FaultResponder, stores: Stores) -> None:
    hop = NextHop().start()
    extra = (
        '[web]\nlisten = "127.0.0.1:{web_port}"\npublic_url = "http://127.0.0.1:{web_port}"\n'
        "[monitor]\ninterval = 1.0\n"
    )
    text = settings(_responder.nameserver, hop.url, "classic", store=stores.url(tmp_path))
    text = text.replace("[storage]", extra + "[storage]")
    process = GatewayProcess(
        tmp_path, text, service=("serve",), ready=(" ready: profile", "Uvicorn running on", "monitor ready")
    )
    try:
        process.start()
        web = f"http://127.0.0.1:{process.web_port}"
        assert process.run("fleet", "add", GOOD, "--helo", "good1.example.org").returncode == 0

        refused = transact(process, source=NO_PTR)
        assert refused.code == 501 and "PTR Records mismatch" in refused.text
        link = re.search(r"see (http://\S+)", refused.text)
        assert link and link.group(1).startswith(f"{web}/check?ip={NO_PTR}&t=")  # signed: policy/exceptions.py
        page = httpx.get(link.group(1), timeout=20)
        assert 'class="verdict fail"' in page.text and "501 5.7.25 PTR Records mismatch" in page.text
        assert transact(process).code == 250 and len(hop.received) == 1

        deadline = time.monotonic() + 20
        while 'state="ok"} 1.0' not in (metrics := httpx.get(f"{web}/metrics").text):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
        assert 'rdnsgate_decisions_total{action="reject",check="iprev",result="permerror"} 1.0' in metrics
        assert 'rdnsgate_smtp_sessions_total{outcome="accepted"} 2.0' in metrics
        assert "rdnsgate_fleet_checks_total 0.0" not in metrics
        assert httpx.get(f"{web}/healthz").json()["status"] == "ok"
    finally:
        code = process.stop()
        hop.stop()
    assert code == 0
    log = process.log()
    assert "web app stopped" in log and "monitor stopped" in log and log.rstrip().endswith("stopped")
    assert "Traceback" not in log
