"""Hostile input against an in-process gateway: generated command lines, and an internal error."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rdnsgate.config import DnsSettings, GatewaySettings
from rdnsgate.frontends.relay import Answer, Destination, MaildirDestination, Transaction
from rdnsgate.frontends.smtp_proxy import Gateway, serve
from rdnsgate.lookups import build_resolver
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import get_profile
from rdnsgate.policy.session import Policy
from tests.harness.faultdns import FaultResponder
from tests.integration.test_gateway import GOOD


class Exploding(Destination):
    def describe(self) -> str:
        return "a destination that fails"

    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        raise RuntimeError("secret internal detail")


class InProcess:
    """A gateway on its own event loop in a thread."""

    def __init__(self, nameserver: str, destination: Destination, profile: str = "monitor") -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.nameserver = nameserver
        self.destination = destination
        self.profile = profile
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.gateway: Gateway | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self.ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        resolver = build_resolver(DnsSettings(nameservers=(self.nameserver,), timeout=0.3, tries=1, cache_size=0))
        self.gateway = Gateway(
            GatewaySettings(relay_domains=("example.net",), command_timeout=5),
            Engine(resolver),
            Policy(get_profile(self.profile), authserv_id="gw.example.net"),
            self.destination,
            DecisionLog(None),
            hostname="gw.example.net",
        )
        self.servers = await serve(self.gateway, [("127.0.0.1", 0)])
        self.port = self.servers[0].sockets[0].getsockname()[1]

    def start(self) -> InProcess:
        self.thread.start()
        assert self.ready.wait(10)
        return self

    def stop(self) -> None:
        async def close() -> None:
            for server in self.servers:
                server.close()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture(scope="module")
def maildir_gateway(_responder: FaultResponder, tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    gateway = InProcess(_responder.nameserver, MaildirDestination(Path(tmp_path_factory.mktemp("fuzz"))))
    yield gateway.start()
    gateway.stop()


def read_reply(sock: socket.socket) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
        tail = data.rsplit(b"\r\n", 2)
        if data.endswith(b"\r\n") and len(tail) >= 2 and tail[-2][3:4] != b"-":
            return data


command = st.one_of(
    st.binary(max_size=1200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
    st.sampled_from(
        [
            b"EHLO",
            b"HELO",
            b"MAIL FROM:",
            b"RCPT TO:",
            b"DATA",
            b"RSET",
            b"NOOP",
            b"VRFY",
            b"STARTTLS",
            b"XCLIENT",
            b"AUTH PLAIN",
        ]
    ).flatmap(
        lambda verb: st.binary(max_size=300).map(lambda arg: verb + b" " + arg.replace(b"\r", b"").replace(b"\n", b""))
    ),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(command, min_size=1, max_size=8))
def test_generated_command_lines_never_crash(maildir_gateway: InProcess, lines: list[bytes]) -> None:
    with socket.create_connection(("127.0.0.1", maildir_gateway.port), timeout=10) as sock:
        assert read_reply(sock).startswith(b"220 ")
        for line in lines:
            if line.upper().startswith((b"DATA", b"QUIT", b"STARTTLS")):
                continue  # they change the conversation's framing; covered by their own tests
            try:
                sock.sendall(line + b"\r\n")
                reply = read_reply(sock)
            except (ConnectionResetError, BrokenPipeError):
                # aiosmtpd hangs up on a client that keeps sending junk ("500 Error: too many unrecognized
                # commands", then close); what this client still had on the wire makes the kernel reset.
                break
            if not reply:
                break
            assert reply[:1] in b"2345" and b"Traceback" not in reply and b"Error: (" not in reply, reply
    with socket.create_connection(("127.0.0.1", maildir_gateway.port), timeout=10) as sock:
        assert read_reply(sock).startswith(b"220 ")  # still serving


def test_internal_error_is_451_and_tells_nothing(_responder: FaultResponder) -> None:
    gateway = InProcess(_responder.nameserver, Exploding()).start()
    try:
        with socket.create_connection(("127.0.0.1", gateway.port), timeout=10) as sock:
            sock.close()
        smtp = smtplib.SMTP(source_address=(GOOD, 0), timeout=10)
        smtp.connect("127.0.0.1", gateway.port)
        smtp.ehlo("good1.example.org")
        smtp.mail("bob@example.org")
        code, text = smtp.rcpt("alice@example.net")
        assert (code, text) == (451, b"4.3.0 Internal error, try again later")
        assert gateway.gateway is not None and gateway.gateway.stats["internal_errors"] == 1
        smtp.close()
    finally:
        gateway.stop()


def test_broken_address_is_a_syntax_error_not_an_internal_one(maildir_gateway: InProcess) -> None:
    smtp = smtplib.SMTP(source_address=(GOOD, 0), timeout=10)
    smtp.connect("127.0.0.1", maildir_gateway.port)
    try:
        smtp.ehlo("good1.example.org")
        code, _ = smtp.docmd("MAIL", "FROM:<")
        assert code == 553  # aiosmtpd's "malformed address", where its parser alone would crash (451)
    finally:
        smtp.close()
