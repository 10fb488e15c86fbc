"""`rdnsgate serve monitor` against knotd: confirmed changes, webhooks, no alarm for one timeout, the source's view.

Records change by RFC 2136 dynamic updates while the monitor runs; alerts
arrive at a local HTTP receiver; the fault responder in front of knotd makes
one check time out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rdnsgate.storage import open_store
from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess
from tests.harness.webhook import Receiver

REV = "2.0.192.in-addr.arpa"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(fail_first=1)  # the first POST fails: the monitor must retry
    yield hook
    hook.close()


def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or condition}")


Stored = tuple[tuple[str, str | None] | None, list[str], list[tuple[str, str]]]


def stored(url: str, ip: str) -> Stored:
    """The watched server `ip` as the store has it: (state, pending change), its checks' details, its alerts."""

    async def read() -> Stored:
        store = await open_store(url, migrate=False)
        try:
            entry = await store.fleet_get(ip)
            history = await store.fleet_history(ip)
            alerts = await store.fleet_alerts(ip)
        finally:
            await store.close()
        state = (entry.state, entry.candidate) if entry else None
        return state, [item["detail"] for item in history], [(item["before"], item["after"]) for item in alerts[::-1]]

    return asyncio.run(read())


def row(url: str, ip: str) -> tuple[str, str | None] | None:
    return stored(url, ip)[0]


def monitor(
    workdir: Path, nameserver: str, knot: KnotServer, store: str, dns: str = "", more: str = ""
) -> GatewayProcess:
    settings = (
        f'[dns]\nnameservers = ["{nameserver}"]\ntimeout = 0.3\ntries = 2\n{dns}'
        f'[storage]\nurl = "{store}"\n'
        "[monitor]\ninterval = 1.0\njitter = 0.1\nconfirmations = 2\n"
        f"webhook_timeout = 2\nwebhook_tries = 3\nauthoritative = true\nauthoritative_port = {knot.port}\n{more}"
    )
    return GatewayProcess(workdir, settings, service=("serve", "monitor"), ready=("monitor ready",))


def test_drift_then_broken_each_confirmed_webhooks_and_no_alarm_for_one_timeout(
    tmp_path: Path, knot: KnotServer, faults: FaultResponder, receiver: Receiver, stores: Stores
) -> None:
    ip = "192.0.2.61"
    knot.update(REV, add=[("61", "PTR", "mta61.example.org.")])
    knot.update("example.org", add=[("mta61", "A", ip), ("mta61b", "A", ip)])
    store = stores.url(tmp_path)
    process = monitor(tmp_path, faults.nameserver, knot, store, "cache_size = 0\n", f'webhook_url = "{receiver.url}"\n')
    try:
        process.start()
        assert process.run("fleet", "add", ip, "--helo", "mta61.example.org", "--label", "eu-1").returncode == 0
        wait_for(lambda: len(receiver.bodies) >= 1, what="unknown -> ok")
        first = receiver.bodies[0]
        assert (first["before"], first["after"]) == ("unknown", "ok")
        assert first["ip"] == ip and first["label"] == "eu-1" and first["helo"] == "mta61.example.org"
        assert first["chain"] == {
            "ptr_names": ["mta61.example.org"],
            "confirmed_name": "mta61.example.org",
            "helo_aligned": True,
            "forward": {"mta61.example.org": [ip]},
        }
        assert receiver.posts >= 2  # the first POST got a 500 and was retried

        # one lost answer: the next check sees it, nothing is alerted, the state stays ok
        faults.add(f"61.{REV}", "PTR", Fault.TIMEOUT)
        wait_for(lambda: row(store, ip) == ("ok", "unknown"), what="a timed-out check")
        faults.clear()
        wait_for(lambda: row(store, ip) == ("ok", None), what="the next good check")

        # a new PTR name that still confirms: drift, after two checks
        knot.update(REV, delete=[("61", "PTR")], add=[("61", "PTR", "mta61b.example.org.")])
        wait_for(lambda: len(receiver.bodies) >= 2, what="ok -> drift")
        drift = receiver.bodies[1]
        assert (drift["before"], drift["after"]) == ("ok", "drift")
        assert drift["last_good"]["ptr_names"] == ["mta61.example.org"]
        assert drift["chain"]["ptr_names"] == ["mta61b.example.org"]  # the HELO name still resolves to the IP

        # the PTR name loses its address: broken
        knot.update("example.org", delete=[("mta61b", "A")])
        wait_for(lambda: len(receiver.bodies) >= 3, what="drift -> broken")
        broken = receiver.bodies[2]
        assert (broken["before"], broken["after"]) == ("drift", "broken")
        assert "broken at the source too" in broken["detail"]
        assert [(b["before"], b["after"]) for b in receiver.bodies] == [
            ("unknown", "ok"),
            ("ok", "drift"),
            ("drift", "broken"),
        ]
        assert "fleet 192.0.2.61 (eu-1): drift -> broken" in process.log()
        _state, checks, alerts = stored(store, ip)
        assert len(checks) >= 7 and alerts == [("unknown", "ok"), ("ok", "drift"), ("drift", "broken")]
    finally:
        assert process.stop() == 0
        knot.update(REV, delete=[("61", "PTR")])
        knot.update("example.org", delete=[("mta61", "A"), ("mta61b", "A")])


def test_fixed_at_the_source_while_resolvers_keep_the_old_answer(
    tmp_path: Path, knot: KnotServer, stores: Stores
) -> None:
    ip = "192.0.2.62"  # no PTR yet; the monitor's resolver caches that NXDOMAIN for the zone's negative TTL
    store = stores.url(tmp_path)
    process = monitor(tmp_path, knot.nameserver, knot, store)
    try:
        process.start()
        assert process.run("fleet", "add", ip).returncode == 0
        wait_for(lambda: row(store, ip) == ("broken", None), what="broken")
        knot.update(REV, add=[("62", "PTR", "mta62.example.org.")])
        knot.update("example.org", add=[("mta62", "A", ip)])

        def note() -> str | None:
            found = [detail for detail in stored(store, ip)[1] if "fixed at the source" in detail]
            return found[-1] if found else None

        detail = wait_for(note, what="the source's view")
        assert "mta62.example.org confirms there" in detail
        assert "resolvers may keep the old answer until" in detail
        assert row(store, ip) == ("broken", None)  # receivers still see the old answer: still broken
    finally:
        assert process.stop() == 0
        knot.update(REV, delete=[("62", "PTR")])
        knot.update("example.org", delete=[("mta62", "A")])
