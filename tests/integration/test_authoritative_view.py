"""`check --authoritative` and the check page's box: the zones' own servers beside what resolvers see.

The fault responder plays a resolver that still holds an old "does not
exist" for a PTR that the zone (knotd, asked directly on its port) now has.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.web import web_process, web_settings

pytestmark = pytest.mark.slow


def check(faults: FaultResponder, knot: KnotServer, ip: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "rdnsgate", "check", ip, "--json", "--authoritative", "--authoritative-port",
         str(knot.port), "--nameserver", faults.nameserver, "--timeout", "0.5"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.stdout, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_fixed_at_the_source_the_same_and_broken_too(faults: FaultResponder, knot: KnotServer) -> None:
    from rdnsgate.frontends.web.schema import ReportModel

    faults.add("1.2.0.192.in-addr.arpa", "PTR", Fault.NXDOMAIN)  # the resolver's old answer
    stale = check(faults, knot, "192.0.2.1")
    ReportModel.model_validate(stale)
    assert stale["checks"]["iprev"]["reason"] == "no-ptr"  # type: ignore[index]
    source = stale["authoritative"]
    assert source["iprev"]["result"] == "pass" and source["chain"]["confirmed_name"] == "mail.example.org"  # type: ignore[index]
    assert source["note"].startswith("fixed at the source (mail.example.org confirms there); resolvers may keep")  # type: ignore[index]
    faults.clear()
    same = check(faults, knot, "192.0.2.1")["authoritative"]
    assert same["note"] == "the same at the source (mail.example.org confirms there)"  # type: ignore[index]
    broken = check(faults, knot, "192.0.2.2")["authoritative"]
    assert broken["note"].startswith("broken at the source too")  # type: ignore[index]


@pytest.fixture
def web(
    tmp_path_factory: pytest.TempPathFactory, knot: KnotServer, faults: FaultResponder, stores: Stores
) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("at-source")
    extra = f"check_burst = 50\n[monitor]\nauthoritative_port = {knot.port}\n"
    process = web_process(workdir, web_settings(faults.nameserver, extra, store=stores.url(workdir)))
    process.start()
    yield process
    process.stop()


def test_the_check_page_shows_the_source(web: GatewayProcess, faults: FaultResponder) -> None:
    faults.add("1.2.0.192.in-addr.arpa", "PTR", Fault.NXDOMAIN)
    base = f"http://127.0.0.1:{web.web_port}"
    page = httpx.get(f"{base}/check", params={"ip": "192.0.2.1", "authoritative": "true"}, timeout=30).text
    assert 'id="at-source"' in page and "fixed at the source (mail.example.org confirms there)" in page
    assert 'id="at-source"' not in httpx.get(f"{base}/check", params={"ip": "192.0.2.1"}, timeout=30).text
