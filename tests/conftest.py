"""Shared fixtures: a real knotd with the scenario zones, the fault responder in front of it, the stores.

Every test that touches the store runs once per kind of store: `stores`
(module scope, so a module's servers are started once per kind) makes fresh
SQLite files or fresh databases on the real PostgreSQL server of the run
(`postgres`); `store_url` is one of them for a single test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.data.zones import zones
from tests.harness.faultdns import FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import PostgresServer, Stores

STORES = ("sqlite", "postgresql")

# The knotd fixture serves only the test zones: every rdnsgate the tests start takes one of their names as
# the resolver guard's canary (the defaults, this host's name and the root SOA, are not served there).
# The guard's own tests set theirs.
os.environ.setdefault("RDNSGATE_DNS_CANARIES", "good1.example.org")


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


@pytest.fixture(scope="module", params=STORES)
def stores(request: pytest.FixtureRequest) -> Stores:
    if request.param == "sqlite":
        return Stores("sqlite")
    return Stores("postgresql", request.getfixturevalue("postgres"))


@pytest.fixture
def store_url(stores: Stores, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file in the test's directory, or a new PostgreSQL database."""
    (tmp_path / "store").mkdir(exist_ok=True)
    return stores.url(tmp_path / "store")


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
