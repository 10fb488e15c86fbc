"""SMTP peers for the gateway tests: a controllable next hop, and the gateway as a subprocess.

`NextHop` is a real SMTP server (aiosmtpd in a thread) whose behaviour the
recipient's local part chooses: ``refuse-…`` 550 at RCPT, ``later-…`` 450 at
RCPT, ``drop-…`` drops the connection at DATA, ``stall-…`` stalls at DATA,
``reject-data-…`` answers 554 to the message; anything else is accepted and
recorded, so a test can count what arrived (nothing lost, nothing twice).

`GatewayProcess` runs ``rdnsgate serve gateway`` with a settings file of the
test's, waits until it listens, and stops it by PID; its log is kept for the
failure report.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

from tests.harness.knot import free_port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    content: bytes
    peer: str
    mail_options: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # MAIL and RCPT arguments as the gateway wrote them


class _DsnSMTP(SMTP):
    """aiosmtpd that offers DSN (RFC 3461) and keeps every MAIL/RCPT argument as written, to check pass-through."""

    def _getparams(self, params: Any) -> Any:
        result = super()._getparams(params)
        if result is not None:
            for name in ("RET", "ENVID", "NOTIFY", "ORCPT"):
                result.pop(name, None)
        return result

    async def smtp_MAIL(self, arg: Any) -> None:
        self.commands = [f"MAIL {arg}"]
        await super().smtp_MAIL(arg)

    async def smtp_RCPT(self, arg: Any) -> None:
        self.commands = [*getattr(self, "commands", []), f"RCPT {arg}"]
        await super().smtp_RCPT(arg)


class _NextHopController(Controller):
    def __init__(self, *args: Any, dsn: bool, **kwargs: Any) -> None:
        self.dsn = dsn
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        if not self.dsn:
            return super().factory()
        return _DsnSMTP(self.handler, **self.SMTP_kwargs)


class _NextHopHandler:
    def __init__(self, hop: NextHop) -> None:
        self.hop = hop

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]) -> Any:
        session.host_name = hostname
        if self.hop.dsn:
            responses.insert(-1, "250-DSN")
        return responses

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: list[str]) -> str:
        local = address.split("@", 1)[0].lower()
        if local.startswith("refuse"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if local.startswith("later"):
            return f"450 4.2.1 <{address}>: Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        locals_ = [item.split("@", 1)[0].lower() for item in envelope.rcpt_tos]
        if any(item.startswith("drop") for item in locals_):
            server.transport.close()
            return "421 closing"
        if any(item.startswith("stall") for item in locals_):
            await asyncio.sleep(self.hop.stall_seconds)
            if server.transport is None or server.transport.is_closing():
                return "451 4.4.1 client gone"  # like an MTA that queues only while its client still waits
        if any(item.startswith("reject-data") for item in locals_):
            return "554 5.7.1 Message content rejected"
        with self.hop.lock:
            self.hop.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    envelope.original_content,
                    session.peer[0],
                    list(envelope.mail_options),
                    list(getattr(server, "commands", [])),
                )
            )
        return "250 2.0.0 Ok: queued as NEXTHOP"


@dataclass
class NextHop:
    host: str = "127.0.0.1"
    port: int = 0
    stall_seconds: float = 5.0
    dsn: bool = False  # offer DSN and keep the MAIL/RCPT arguments as written
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    controller: Controller | None = None

    def start(self) -> NextHop:
        self.port = self.port or free_port(self.host)
        self.controller = _NextHopController(
            _NextHopHandler(self),
            hostname=self.host,
            port=self.port,
            ready_timeout=10,
            enable_SMTPUTF8=True,
            dsn=self.dsn,
        )
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def clear(self) -> None:
        with self.lock:
            self.received.clear()

    @property
    def url(self) -> str:
        return f"smtp://{self.host}:{self.port}"


def as_root(command: tuple[str, ...] | list[str]) -> list[str]:
    """``--allow-root`` for a ``serve`` command when the tests run as root (they drop nothing themselves)."""
    return ["--allow-root"] if command and command[0] == "serve" and os.geteuid() == 0 else []


class GatewayProcess:
    """``rdnsgate serve gateway`` (or another service: `service`, ready when every `ready` text is logged)."""

    def __init__(
        self,
        workdir: Path,
        settings: str,
        port: int | None = None,
        *,
        service: tuple[str, ...] = ("serve", "gateway"),
        ready: tuple[str, ...] = (" ready: profile",),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.web_port = free_port()
        self.settings_text = settings.replace("{port}", str(self.port)).replace("{web_port}", str(self.web_port))
        self.service = service
        self.ready = ready
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.workdir / "rdnsgate.toml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "gateway.log"

    def start(self, timeout: float = 20.0) -> GatewayProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(self.settings_text)
        log = open(self.log_path, "wb")  # noqa: SIM115 - handed to the child
        # Only the settings file counts, but for the resolver guard's canary (tests/conftest.py).
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("RDNSGATE_") or key == "RDNSGATE_DNS_CANARIES"
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "rdnsgate", *self.service, *as_root(self.service), "--config", str(self.config)],
            cwd=self.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{' '.join(self.service)} exited with {self.proc.returncode}:\n{self.log()}")
            if all(text in self.log() for text in self.ready):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{' '.join(self.service)} did not start in {timeout}s:\n{self.log()}")

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """An ``rdnsgate`` command against this gateway's settings (whitelist, decisions)."""
        return rdnsgate_cli(self.config, *args, cwd=self.workdir)


def rdnsgate_cli(config: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``rdnsgate ARGS --config CONFIG`` (whitelist, decisions, ...), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "rdnsgate", *args, "--config", str(config)],
        cwd=cwd or config.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_port(host: str, port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port}")
