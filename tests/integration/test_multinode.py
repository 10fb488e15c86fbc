"""Several nodes on one real PostgreSQL: two gateways, a policy service, the web app, two monitors.

What a mail provider with several MX hosts counts on: a whitelist entry
added on one node is honoured by all within a second (LISTEN/NOTIFY: the
periodic reload is set to a minute here, so only the notification can
explain it); one search shows every node's decisions with its name; with
PostgreSQL stopped in the middle of mail flow every reply stays the same
and the decisions made meanwhile reach the store once it is back; of two
monitors, one killed, the other carries on and each change is alerted once.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rdnsgate.storage.base import newest_revision
from tests.harness.faultdns import FaultResponder
from tests.harness.knot import KnotServer
from tests.harness.postgres import PostgresServer
from tests.harness.smtp import GatewayProcess, NextHop
from tests.harness.web import logged_in, set_password, web_process, web_settings
from tests.harness.webhook import Receiver
from tests.integration.test_gateway import GOOD, MISMATCH, NO_PTR, settings, transact
from tests.integration.test_monitor import row, wait_for
from tests.integration.test_policy_service import PolicyProcess, ask, request

pytestmark = pytest.mark.slow

REV = "2.0.192.in-addr.arpa"
NODES = ("mx-a", "mx-b")


def node_settings(nameserver: str, hop: str, store: str, node: str) -> str:
    text = settings(nameserver, hop, "classic", store=store).replace(
        "whitelist_refresh = 0.5", "whitelist_refresh = 60"
    )
    return text + f'node = "{node}"\n'


@pytest.fixture
def cluster(
    tmp_path: Path, _responder: FaultResponder, knot: KnotServer, postgres: PostgresServer
) -> Iterator[dict[str, object]]:
    store = postgres.create_database("multi")
    hop = NextHop().start()
    started: dict[str, object] = {"store": store, "hop": hop}
    try:
        for node in NODES:
            text = node_settings(_responder.nameserver, hop.url, store, node)
            started[node] = GatewayProcess(tmp_path / node, text).start()
        started["policy"] = PolicyProcess(
            tmp_path / "policy", _responder.nameserver, "postfix", "whitelist_refresh = 60",
            store=store, more='node = "policy-1"\n',
        ).start()  # fmt: skip
        web = web_process(tmp_path / "web", web_settings(knot.nameserver, "", store=store))
        started["web"] = web.start()
        assert set_password(web.workdir).returncode == 0
        yield started
    finally:
        if postgres.process is None:  # a test stopped it: the next tests need it
            postgres.start()
        for name in (*NODES, "policy", "web"):
            process = started.get(name)
            if process is not None:
                process.stop()  # type: ignore[attr-defined]
        hop.stop()


def policy_answer(policy: PolicyProcess, client: str, instance: str) -> str:
    with socket.create_connection(("127.0.0.1", policy.port), timeout=10) as sock:
        return ask(sock, request(client_address=client, instance=instance)).strip()


def decisions(gateway: GatewayProcess, ip: str) -> list[dict[str, object]]:
    done = gateway.run("decisions", "--ip", ip, "--json", "--limit", "1000")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_a_whitelist_entry_reaches_every_node_within_a_second_and_one_search_shows_all(
    cluster: dict[str, object],
) -> None:
    a, b = cluster["mx-a"], cluster["mx-b"]
    policy, web = cluster["policy"], cluster["web"]
    assert isinstance(a, GatewayProcess) and isinstance(b, GatewayProcess)
    assert isinstance(policy, PolicyProcess) and isinstance(web, GatewayProcess)
    assert transact(b, NO_PTR).code == 501
    assert policy_answer(policy, NO_PTR, "before").startswith("action=450 ")
    added = a.run("whitelist", "add", NO_PTR, "--reason", "PTR fix pending, ticket 7")
    assert added.returncode == 0, added.stderr
    start = time.monotonic()
    while transact(b, NO_PTR).code != 250 or policy_answer(policy, NO_PTR, f"i{time.monotonic()}") != "action=DUNNO":
        assert time.monotonic() - start < 1.0, "a whitelist entry added on mx-a was not honoured within a second"
        time.sleep(0.02)
    took = time.monotonic() - start
    assert transact(a, NO_PTR).code == 250
    print(f"whitelist entry honoured by mx-b and the policy service {took * 1000:.0f} ms after the CLI returned")

    # Every node's decisions in one search, each with its node's name: the CLI and the admin page.
    def nodes_seen() -> set[object]:
        return {item["node"] for item in decisions(a, NO_PTR)}

    wait_for(lambda: nodes_seen() >= {"mx-a", "mx-b", "policy-1"}, what="every node's records")
    page = logged_in(f"http://127.0.0.1:{web.web_port}").get("/decisions", params={"ip": NO_PTR, "since": "1h"})
    assert page.status_code == 200
    for node in ("mx-a", "mx-b", "policy-1"):
        assert re.search(rf"<small>{node} · ", page.text), node
    status = a.run("db", "status")
    assert status.returncode == 0 and f"schema: {newest_revision()} (the newest)" in status.stdout
    for node, services in (("mx-a", "gateway"), ("mx-b", "gateway"), ("policy-1", "policy"), ("", "web")):
        assert re.search(rf"^{node}\S*\s+{services}\s", status.stdout, re.MULTILINE), (node, status.stdout)


def test_mail_flows_the_same_while_postgresql_is_down_and_the_log_catches_up(
    cluster: dict[str, object], postgres: PostgresServer
) -> None:
    a, web, policy = cluster["mx-a"], cluster["web"], cluster["policy"]
    assert isinstance(a, GatewayProcess) and isinstance(web, GatewayProcess) and isinstance(policy, PolicyProcess)
    assert a.run("whitelist", "add", MISMATCH, "--reason", "partner").returncode == 0
    wait_for(lambda: transact(a, MISMATCH).code == 250, what="the whitelist")
    clients = (GOOD, NO_PTR, MISMATCH)
    before = [(transact(a, ip).code, policy_answer(policy, ip, f"b{n}")) for n, ip in enumerate(clients)]
    assert [code for code, _ in before] == [250, 501, 250]
    assert [answer.split()[0] for _, answer in before] == ["action=DUNNO", "action=450", "action=DUNNO"]
    health = f"http://127.0.0.1:{web.web_port}/healthz"
    assert httpx.get(health).json()["status"] == "ok"

    postgres.stop()
    during = [(transact(a, ip).code, policy_answer(policy, ip, f"d{n}")) for n, ip in enumerate(clients)]
    assert during == before  # no reply changes because the database is away; the whitelist is the last known
    report = httpx.get(health)
    assert report.status_code == 200 and report.json()["status"] == "degraded", report.text
    assert report.json()["store"].startswith("unavailable: ")
    assert a.run("decisions", "--ip", GOOD).returncode == 3  # the CLI says: try again later

    postgres.start()

    def gateway_records(ip: str) -> int:
        return sum(1 for item in decisions(a, ip) if item["node"] == "mx-a")

    # Before and during the outage: one session each of GOOD and NO_PTR through mx-a.
    wait_for(lambda: gateway_records(GOOD) == 2 and gateway_records(NO_PTR) == 2, timeout=40,
             what="the decisions made while PostgreSQL was down")  # fmt: skip
    assert "the store is back after" in a.log()
    assert a.log().count("could not store") == 1  # said when it went away, not at every retry
    assert httpx.get(health).json()["status"] == "ok"


def test_two_monitors_one_killed_the_other_carries_on_and_alerts_once(
    tmp_path: Path, knot: KnotServer, postgres: PostgresServer
) -> None:
    store = postgres.create_database("monitors")
    hook = Receiver()
    ip = "192.0.2.64"
    knot.update(REV, add=[("64", "PTR", "mta64.example.org.")])
    knot.update("example.org", add=[("mta64", "A", ip), ("mta64b", "A", ip)])
    monitors = []
    try:
        for number in (1, 2):
            text = (
                f'[dns]\nnameservers = ["{knot.nameserver}"]\ntimeout = 0.3\ntries = 2\ncache_size = 0\n'
                "[checks]\ndeadline = 2.0\n"
                f'[storage]\nurl = "{store}"\nnode = "mon-{number}"\n'
                f'[monitor]\ninterval = 1.0\njitter = 0.1\nconfirmations = 2\nwebhook_url = "{hook.url}"\n'
            )
            process = GatewayProcess(
                tmp_path / f"mon{number}", text, service=("serve", "monitor"), ready=("monitor ready",)
            )
            monitors.append(process.start())
        assert monitors[0].run("fleet", "add", ip, "--label", "eu-1").returncode == 0
        wait_for(lambda: [(item["before"], item["after"]) for item in hook.bodies] == [("unknown", "ok")],
                 what="unknown -> ok")  # fmt: skip
        time.sleep(3)  # both monitors keep polling: the change is alerted once, not once per node
        assert len(hook.bodies) == 1

        first = monitors[0].proc
        assert first is not None
        first.send_signal(signal.SIGKILL)  # no goodbye: its leases run out (2 x checks.deadline)
        first.wait()
        knot.update(REV, delete=[("64", "PTR")], add=[("64", "PTR", "mta64b.example.org.")])
        wait_for(lambda: len(hook.bodies) >= 2, timeout=30, what="ok -> drift from the surviving monitor")
        time.sleep(3)
        assert [(item["before"], item["after"]) for item in hook.bodies] == [("unknown", "ok"), ("ok", "drift")]
        assert row(store, ip) == ("drift", None)
    finally:
        for process in monitors:
            if process.proc is not None and process.proc.poll() is not None:
                process.proc = None
            process.stop()
        hook.close()
        knot.update(REV, delete=[("64", "PTR")])
        knot.update("example.org", delete=[("mta64", "A"), ("mta64b", "A")])
