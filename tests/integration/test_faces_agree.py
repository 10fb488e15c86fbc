"""The same clients get the same answers from every face: session, gateway, policy service, check --json.

The table is tests/data/replay.py; each face is driven as its users drive
it (real processes for the gateway and the policy service, the CLI command
in-process, the session with a real resolver against knotd).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from rdnsgate.checks.names import parse_ip
from rdnsgate.config import DnsSettings
from rdnsgate.lookups import build_resolver
from rdnsgate.main import app
from rdnsgate.model import WhitelistEntry
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import get_profile
from rdnsgate.policy.session import Policy, Session
from tests.data.replay import CASES, PROFILES, Case, Refusal
from tests.harness.faultdns import FaultResponder
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import settings, transact
from tests.integration.test_policy_service import PolicyProcess, ask, request

pytestmark = pytest.mark.slow
IDS = [case.name for case in CASES]


def _reverse_path(case: Case) -> str:
    return f"<{case.sender}>"


@pytest.fixture(scope="module")
def hop() -> Iterator[NextHop]:
    server = NextHop().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateways(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, hop: NextHop, stores: Stores
) -> Iterator[dict[str, GatewayProcess]]:
    started: dict[str, GatewayProcess] = {}
    try:
        for profile in PROFILES:
            workdir = tmp_path_factory.mktemp(f"agree-gw-{profile}")
            text = settings(_responder.nameserver, hop.url, profile, store=stores.url(workdir))
            started[profile] = GatewayProcess(workdir, text).start()
        yield started
    finally:
        for process in started.values():
            process.stop()


@pytest.fixture(scope="module")
def policies(
    tmp_path_factory: pytest.TempPathFactory, _responder: FaultResponder, stores: Stores
) -> Iterator[dict[str, PolicyProcess]]:
    started: dict[str, PolicyProcess] = {}
    try:
        for profile in PROFILES:
            workdir = tmp_path_factory.mktemp(f"agree-policy-{profile}")
            started[profile] = PolicyProcess(workdir, _responder.nameserver, profile, store=stores.url(workdir)).start()
        yield started
    finally:
        for process in started.values():
            process.stop()


class _Whitelist:
    def __init__(self) -> None:
        self.whitelist: list[WhitelistEntry] = []


async def _session(case: Case, profile: str, nameserver: str) -> Refusal:
    resolver = build_resolver(DnsSettings(nameservers=(nameserver,), timeout=0.3, tries=2, cache_size=0))
    try:
        session = Session(Policy(get_profile(profile)), Engine(resolver), _Whitelist(), None, id="replay")
        session.begin(parse_ip(case.ip))
        refusal = await session.helo(case.helo)
        if refusal is not None:
            return "helo", refusal.reply.code if refusal.reply else 0
        refusal = await session.mail(_reverse_path(case))
        if refusal is not None:
            return "mail", refusal.reply.code if refusal.reply else 0
        decision = await session.rcpt("alice@example.net")
        if decision.refused:
            return "rcpt", decision.reply.code if decision.reply else 0
        return None
    finally:
        await resolver.close()


@pytest.mark.parametrize("case", CASES, ids=IDS)
async def test_session(case: Case, _responder: FaultResponder) -> None:
    for profile in PROFILES:
        assert await _session(case, profile, _responder.nameserver) == case.expect[profile], profile


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_check_json(case: Case, _responder: FaultResponder) -> None:
    NAMESERVER = ("--nameserver", _responder.nameserver, "--timeout", "0.3")
    result = CliRunner().invoke(
        app,
        ["check", case.ip, "--helo", case.helo, "--sender", _reverse_path(case), "--json", *NAMESERVER],
    )
    profiles = json.loads(result.stdout)["profiles"]
    for profile in PROFILES:
        answer = profiles[profile]
        got = (answer["stage"], answer["code"]) if answer["action"] in ("reject", "tempfail") else None
        assert got == case.expect[profile], profile


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gateway(case: Case, gateways: dict[str, GatewayProcess]) -> None:
    stages = {"ehlo": "helo", "mail": "mail", "rcpt": "rcpt"}
    for profile in PROFILES:
        outcome = transact(gateways[profile], source=case.ip, helo=case.helo, sender=case.sender)
        got = None if outcome.stage == "done" else (stages.get(outcome.stage, outcome.stage), outcome.code)
        assert got == case.expect[profile], (profile, outcome)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_policy_service(case: Case, policies: dict[str, PolicyProcess]) -> None:
    """Postfix asks at HELO, MAIL and RCPT with the same instance, as with check_policy_service at each stage."""
    for profile in PROFILES:
        got: Refusal = None
        with socket.create_connection(("127.0.0.1", policies[profile].port), timeout=10) as sock:
            for state, stage in (("EHLO", "helo"), ("MAIL", "mail"), ("RCPT", "rcpt")):
                attributes = {"protocol_state": state, "client_address": case.ip, "helo_name": case.helo}
                attributes["instance"] = f"{case.name}-{profile}"
                attributes["sender"] = case.sender if state != "EHLO" else ""
                answer = ask(sock, request(**attributes)).removeprefix("action=").strip()
                if answer.split()[0] not in ("DUNNO", "PREPEND"):
                    code = 450 if answer.startswith("DEFER_IF_PERMIT") else int(answer.split()[0])
                    got = (stage, code)
                    break
        assert got == case.expect[profile], (profile, answer)
