"""A broken resolver never refuses mail: the fault responder turns hostile mid-run under a real gateway.

While every question gets NXDOMAIN (a resolver that says nothing exists) or
SERVFAIL, the canary (good1.example.org, tests/conftest.py) fails, and every
permanent refusal becomes ``451 4.4.3``; /healthz and /metrics say so, one
warning is logged and one alert goes to the webhook.  Once the resolver
answers again, the profile's replies come back.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.harness.webhook import Receiver
from tests.integration.test_gateway import GOOD, NO_PTR, settings, transact

pytestmark = pytest.mark.slow


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    hook = Receiver()
    yield hook
    hook.close()


def wait_for(condition: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_no_5xx_while_the_resolver_lies(
    tmp_path: Path, faults: FaultResponder, stores: Stores, webhook: Receiver
) -> None:
    hop = NextHop().start()
    text = settings(faults.nameserver, hop.url, "strict", store=stores.url(tmp_path))
    text = text.replace("[dns]\n", "[dns]\ncanary_interval = 0.3\n", 1)
    extra = f'[web]\nlisten = "127.0.0.1:{{web_port}}"\n[monitor]\nwebhook_url = "{webhook.url}"\n'
    text = text.replace("[storage]", extra + "[storage]")
    assert "cache_size = 0" in text, "every question must reach the responder"
    process = GatewayProcess(
        tmp_path, text, service=("serve",), ready=(" ready: profile", "Uvicorn running on", "monitor ready")
    )
    web = f"http://127.0.0.1:{process.web_port}"
    try:
        process.start()
        assert transact(process, source=NO_PTR).code == 550
        assert httpx.get(f"{web}/healthz").json()["status"] == "ok"
        for hostile in ("nxdomain", Fault.SERVFAIL):
            faults.hostile = hostile
            wait_for(lambda: "dns" in httpx.get(f"{web}/healthz").json(), f"healthz never said {hostile}")
            for source in (NO_PTR, GOOD):
                refused = transact(process, source=source)
                assert refused.code is not None and 400 <= refused.code < 500, (hostile, source, refused)
            health = httpx.get(f"{web}/healthz").json()
            assert health["status"] == "degraded" and "canary good1.example.org" in health["dns"], health
            assert "rdnsgate_dns_healthy 0.0" in httpx.get(f"{web}/metrics").text
            faults.hostile = None
            wait_for(lambda: "dns" not in httpx.get(f"{web}/healthz").json(), "the resolver never recovered")
        lying = transact(process, source=NO_PTR)
        assert lying.code == 550, lying  # the profile's own reply again
        assert transact(process).code == 250
        assert "rdnsgate_dns_healthy 1.0" in httpx.get(f"{web}/metrics").text
        log = process.log()
        assert log.count("the DNS resolver cannot be trusted") == 2, log[-3000:]
        assert "4.4.3 Temporary DNS failure on our side (the canary good1.example.org" in log, log[-3000:]
        wait_for(lambda: len(webhook.bodies) >= 4, f"webhook got {webhook.bodies}")
        assert [body["state"] for body in webhook.bodies] == ["unhealthy", "healthy", "unhealthy", "healthy"]
        assert all(body["event"] == "resolver" for body in webhook.bodies)
    finally:
        faults.hostile = None
        process.stop()
        hop.stop()
