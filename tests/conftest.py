"""Shared fixtures: a real knotd with the scenario zones, the fault responder in front of it, the stores.

`store_url` runs a test once per store: a fresh SQLite file, and a fresh
database on a real PostgreSQL server (one per test run, `postgres`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.zones import zones
from tests.harness.faultdns import FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import PostgresServer

STORES = ("sqlite", "postgresql")


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


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer().init().start()
    yield server
    server.remove()


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file in the test's directory, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'rdnsgate.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


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
    database = values.get("postgres")
    if isinstance(database, PostgresServer):
        report.sections.append(("postgres log (last 30 lines)", "\n".join(database.log().splitlines()[-30:])))
    for name, gateway in (values.get("gateways") or {}).items():
        report.sections.append((f"gateway {name} log (last 30 lines)", "\n".join(gateway.log().splitlines()[-30:])))
