"""Shared fixtures: a real knotd with the scenario zones, and the fault responder in front of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.data.zones import zones
from tests.harness.faultdns import FaultResponder
from tests.harness.knot import KnotServer


@pytest.fixture(scope="session")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KnotServer]:
    server = KnotServer(tmp_path_factory.mktemp("knot"), zones())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _responder(knot: KnotServer) -> Iterator[FaultResponder]:
    responder = FaultResponder((knot.address, knot.port)).start()
    yield responder
    responder.stop()


@pytest.fixture
def faults(_responder: FaultResponder) -> Iterator[FaultResponder]:
    """The fault responder, with no rules at the start of each test."""
    _responder.clear()
    yield _responder
    _responder.clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Show knotd's log under a failed test that used it."""
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    values = getattr(item, "funcargs", {})
    server = values.get("knot")
    if isinstance(server, KnotServer):
        report.sections.append(("knotd log (last 40 lines)", "\n".join(server.log().splitlines()[-40:])))
    for name, gateway in (values.get("gateways") or {}).items():
        report.sections.append((f"gateway {name} log (last 30 lines)", "\n".join(gateway.log().splitlines()[-30:])))
