"""SIGHUP: new settings for new sessions, the old ones for sessions in progress, a broken file refused.

A client with no PTR is refused under `classic`; the file is switched to
`monitor` and the gateway (one process, and two worker processes) gets
SIGHUP: the same client is accepted in a new session, while a session opened
before the reload still answers under `classic`.  A file with an unknown
profile changes nothing; a changed listen address is named as waiting for a
restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from rdnsgate.config import Settings, load_settings
from rdnsgate.frontends.policy_server import PolicyRunner
from rdnsgate.supervisor import run_services
from tests.harness.faultdns import FaultResponder
from tests.harness.knot import free_port
from tests.harness.postgres import Stores
from tests.harness.smtp import GatewayProcess, NextHop
from tests.integration.test_gateway import NO_PTR, client, settings, transact
from tests.integration.test_policy_service import PolicyProcess, ask, request


def hang_up(gateway: GatewayProcess, text: str, count: int, seconds: float = 20.0) -> None:
    """Write `text` as the settings file, SIGHUP, and wait until `count` log lines say how it went."""
    assert gateway.proc is not None
    gateway.config.write_text(text)
    before = gateway.log().count("reloaded the settings") + gateway.log().count("reload refused")
    gateway.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + seconds
    while gateway.log().count("reloaded the settings") + gateway.log().count("reload refused") < before + count:
        assert time.monotonic() < deadline, gateway.log()[-3000:]
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_reload_switches_the_profile_for_new_sessions_only(
    tmp_path: Path, _responder: FaultResponder, stores: Stores, workers: int
) -> None:
    hop = NextHop().start()
    classic = settings(_responder.nameserver, hop.url, "classic", f"workers = {workers}", store=stores.url(tmp_path))
    gateway = GatewayProcess(tmp_path / "gw", classic).start()
    try:
        deadline = time.monotonic() + 20
        while gateway.log().count(" ready: profile") < workers:  # every worker, not only the first
            assert time.monotonic() < deadline, gateway.log()
            time.sleep(0.05)
        assert transact(gateway, NO_PTR).code == 501
        early = client(gateway, NO_PTR)  # connected before the reload: it keeps classic
        try:
            monitor = gateway.config.read_text().replace('profile = "classic"', 'profile = "monitor"')
            hang_up(gateway, monitor, workers)
            assert "need a restart" not in gateway.log()
            for _ in range(4):  # every worker took it (the kernel spreads connections over them)
                assert transact(gateway, NO_PTR).code == 250
            assert early.ehlo("good1.example.org")[0] == 501
        finally:
            early.close()

        broken = monitor.replace('profile = "monitor"', 'profile = "nope"')
        hang_up(gateway, broken, workers)
        assert (
            "reload refused, the settings in force are kept: gateway.profile: unknown profile 'nope'" in gateway.log()
        )
        assert transact(gateway, NO_PTR).code == 250  # still monitor

        moved = monitor.replace(f"127.0.0.1:{gateway.port}", "127.0.0.1:1")
        hang_up(gateway, moved, workers)
        assert "these need a restart and are unchanged until then: gateway.listen" in gateway.log()
        assert transact(gateway, NO_PTR).code == 250  # still listening where it was
    finally:
        assert gateway.stop() == 0
        hop.stop()


def test_the_policy_service_reloads_too(tmp_path: Path, _responder: FaultResponder, stores: Stores) -> None:
    service = PolicyProcess(tmp_path, _responder.nameserver, "postfix", store=stores.url(tmp_path)).start()
    try:
        with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
            assert ask(sock, request(client_address=NO_PTR, instance="a")).startswith("action=450 ")
            config = tmp_path / "rdnsgate.toml"
            config.write_text(config.read_text().replace('profile = "postfix"', 'profile = "monitor"'))
            assert service.proc is not None
            service.proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            while "reloaded the settings" not in service.log():
                assert time.monotonic() < deadline, service.log()
                time.sleep(0.05)
            # The Postfix session in progress keeps its profile; the next one gets monitor's header.
            assert ask(sock, request(client_address=NO_PTR, instance="a")).startswith("action=450 ")
            assert ask(sock, request(client_address=NO_PTR, instance="b")).startswith(
                "action=PREPEND Authentication-Results: "
            )
    finally:
        service.stop()


def test_a_sighup_right_after_the_ready_line_is_not_lost(
    tmp_path: Path, _responder: FaultResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SIGHUP handler is in place before any service says it is ready: a reload sent at that line waits
    until every service has started, and then happens (before, the process ignored it)."""
    config = tmp_path / "rdnsgate.toml"
    config.write_text(
        f'[dns]\nnameservers = ["{_responder.nameserver}"]\n'
        f'[policy]\nlisten = ["127.0.0.1:{free_port()}"]\nprofile = "postfix"\n'
        f'[storage]\nurl = "sqlite:///{tmp_path / "rdnsgate.db"}"\n'
    )
    settings = load_settings(config)
    started = PolicyRunner.start
    events: list[str] = []

    async def start_then_hang_up(self: PolicyRunner) -> None:
        await started(self)  # logs "ready"
        events.append("ready")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)  # the signal is delivered while the start is not yet finished
        events.append("started")

    def reloader() -> Settings:
        events.append("reload")
        stop.set()
        return settings

    monkeypatch.setattr(PolicyRunner, "start", start_then_hang_up)

    async def main() -> None:
        await asyncio.wait_for(run_services(settings, ["policy"], stop, reloader=reloader), 30)

    stop = asyncio.Event()
    previous = signal.getsignal(signal.SIGHUP)
    try:
        asyncio.run(main())
    finally:
        signal.signal(signal.SIGHUP, previous)
    assert events == ["ready", "started", "reload"]


def test_a_reload_puts_new_canaries_in_force(
    tmp_path: Path, _responder: FaultResponder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """dns.canaries changed by a reload: the resolver guard asks the new names from its next round."""
    monkeypatch.delenv("RDNSGATE_DNS_CANARIES", raising=False)  # the file's canaries count, not the suite's
    service = PolicyProcess(tmp_path, _responder.nameserver, "postfix", store=f"sqlite:///{tmp_path / 'r.db'}")
    config = tmp_path / "rdnsgate.toml"
    first = config.read_text().replace("[dns]\n", '[dns]\ncanaries = ["good1.example.org"]\ncanary_interval = 0.3\n')
    config.write_text(first)
    service.start()
    try:
        config.write_text(first.replace('["good1.example.org"]', '["good1.example.org", "gone.example.org"]'))
        assert service.proc is not None
        service.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 20
        while "gone.example.org does not exist now" not in service.log():
            assert time.monotonic() < deadline, service.log()
            time.sleep(0.05)
        assert "dns.canaries now: good1.example.org, gone.example.org" in service.log()
        assert "need a restart" not in service.log()
    finally:
        service.stop()
