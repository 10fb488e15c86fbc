"""The SMTP gateway: an aiosmtpd server that applies a profile, in front of any MTA.

Per connection: the iprev lookup starts when the client connects (or when a
trusted proxy has said who the client is), so it runs while the banner and
EHLO go by.  Each hook asks `policy.decide` for the decision at its stage and
answers with the profile's reply there; refusals are logged once with the
session's whole context.  Accepted recipients are forwarded to the next hop in
the same session (frontends.relay), and DATA is answered with the next hop's
own reply.  Any internal error answers ``451 4.3.0`` and logs a traceback;
the exception text never reaches the client.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import logging
import re
import secrets
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session, syntax

from rdnsgate import logs
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import GatewaySettings, Settings, parse_listen
from rdnsgate.errors import ConfigError
from rdnsgate.frontends.esmtp import (
    DSN_MAIL,
    DSN_RCPT,
    PASSED_MAIL,
    content_line,
    ehlo_keywords,
    keyword,
    passed_on,
    with_enhanced_code,
)
from rdnsgate.frontends.relay import LOST, Answer, Destination, Offer, Transaction, destination_for
from rdnsgate.model import IPAddress, Report, WhitelistEntry
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.headers import authentication_results, printable
from rdnsgate.policy.session import Policy, WhitelistHolder
from rdnsgate.policy.session import Session as PolicySession
from rdnsgate.runtime import Commit, Deadline, Runtime

log = logging.getLogger(__name__)
sessions = logging.getLogger("rdnsgate.smtp")  # one line per SMTP session (GatewaySMTP.summary)

INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"
NEEDS_SMTPUTF8 = "553 5.6.7 Must declare SMTPUTF8 to send unicode address"
BLOCK = 64 * 1024  # bytes of message content gathered before they go to the destination
_DISPATCH_NAMES: dict[tuple[type, tuple[str, ...]], list[str]] = {}


def dispatch_names(cls: type, prefixes: tuple[str, ...]) -> list[str]:
    """The names of `cls` that start with one of `prefixes` (made once per class): what aiosmtpd looks up."""
    names = _DISPATCH_NAMES.get((cls, prefixes))
    if names is None:
        names = _DISPATCH_NAMES[cls, prefixes] = [name for name in dir(cls) if name.startswith(prefixes)]
    return list(names)


_TRAILING_DOT = re.compile(r"<(?P<address>[^<>@\s]+@[^<>@\s.](?:[^<>@\s]*[^<>@\s.])?)\.>(?P<rest>(?:[ \t].*)?)\Z")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<(?P<address>{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>(?P<rest>(?:[ \t].*)?)\Z"
)


@dataclass
class SessionState:
    """What the gateway knows about one SMTP connection beyond the policy session."""

    session: PolicySession
    client_ip: IPAddress
    awaiting_xclient: bool = False  # a trusted proxy has not yet said who the client is
    transaction: Transaction | None = None
    accepted: tuple[Report, Decision] | None = None  # the decision that let this transaction's recipients in
    mail_parameters: list[str] = field(default_factory=list)  # to pass on, as the client wrote them

    @property
    def id(self) -> str:
        return self.session.id


@dataclass(frozen=True, eq=False)
class Setup:
    """What a session runs under, fixed when it connects: a reload makes a new one for the sessions after it."""

    settings: GatewaySettings
    engine: Engine
    policy: Policy
    destination: Destination
    tls_context: ssl.SSLContext | None = None
    relay_domains: frozenset[str] = frozenset()
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def of(
        cls,
        settings: GatewaySettings,
        engine: Engine,
        policy: Policy,
        destination: Destination,
        tls_context: ssl.SSLContext | None = None,
    ) -> Setup:
        return cls(
            settings,
            engine,
            policy,
            destination,
            tls_context,
            frozenset(item.lower().rstrip(".") for item in settings.relay_domains),
            tuple(ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies),
        )

    def is_trusted(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip.version == net.version and ip in net for net in self.trusted)


class Gateway:
    """Everything the sessions share: the current setup, whitelist, log, limits, the sessions open."""

    def __init__(
        self,
        settings: GatewaySettings,
        engine: Engine,
        policy: Policy,
        destination: Destination,
        decisions: DecisionLog,
        *,
        hostname: str,
        tls_context: ssl.SSLContext | None = None,
        whitelist: WhitelistHolder | None = None,
    ) -> None:
        self.setup = Setup.of(settings, engine, policy, destination, tls_context)
        self.decisions = decisions
        self.hostname = hostname
        self.whitelist: list[WhitelistEntry] = []  # used when no holder is given
        self.holder: WhitelistHolder = whitelist or self
        self.per_ip: Counter[str] = Counter()
        self.open: set[GatewaySMTP] = set()  # the sessions in progress (limits, metrics, the 421 at shutdown)
        self.stats: Counter[str] = Counter()
        self.hooks = _Hooks(self)  # stateless: one for all sessions

    @property
    def sessions(self) -> int:
        return len(self.open)

    @property
    def settings(self) -> GatewaySettings:
        return self.setup.settings

    @property
    def policy(self) -> Policy:
        return self.setup.policy

    @property
    def destination(self) -> Destination:
        return self.setup.destination

    @property
    def relay_domains(self) -> frozenset[str]:
        return self.setup.relay_domains

    # -- shared helpers ---------------------------------------------------------------------------
    def protocol(self) -> GatewaySMTP:
        return GatewaySMTP(self, self.hooks)

    def replace(self, setup: Setup) -> Setup:
        """New sessions get `setup`; the old one is returned (its sessions keep it until they end)."""
        old, self.setup = self.setup, setup
        return old

    def in_use(self, setup: Setup) -> bool:
        return any(protocol.setup is setup for protocol in self.open)

    def new_state(
        self, setup: Setup, client_ip: IPAddress, session_id: str | None = None, *, begin: bool = True
    ) -> SessionState:
        session = PolicySession(
            setup.policy, setup.engine, self.holder, self.decisions, id=session_id or secrets.token_hex(6)
        )
        if begin:
            session.begin(client_ip)
        return SessionState(session, client_ip)

    def count(self, decision: Decision) -> None:
        self.stats[f"decision_{decision.action.value}"] += 1


class GatewaySMTP(SMTP):
    """One client connection.  aiosmtpd runs the protocol; the hooks below take the decisions."""

    def __init__(self, gateway: Gateway, hooks: _Hooks) -> None:
        setup = gateway.setup
        settings = setup.settings
        super().__init__(
            hooks,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            hostname=gateway.hostname,
            ident="ESMTP rdnsgate",
            tls_context=setup.tls_context,
            timeout=settings.command_timeout,
            proxy_protocol_timeout=10.0 if settings.proxy_protocol else None,
            loop=asyncio.get_running_loop(),  # else aiosmtpd finds it under warnings.catch_warnings, per connection
        )
        self.gateway = gateway
        self.refused: Decision | None = None  # the last refusal of the session, for its summary line
        self.recipients: list[str] = []  # accepted in the whole session
        self.setup = setup  # this session's settings, profile and next hop, whatever a reload does meanwhile
        self.state: SessionState | None = None
        self.counted_ip: str | None = None
        self.close_after_reply = False
        self.offer = Offer()  # what the destination honours, as of this session's EHLO
        self.written: list[str] = []  # the parameters of the last MAIL/RCPT address, as the client wrote them
        self.hello_reply = False  # RFC 2034: no enhanced codes in HELO/EHLO replies
        self.lines = bytearray()  # the lines of a multi-line reply so far: it goes out whole, in one write

    def __dir__(self) -> list[str]:
        """Only the names aiosmtpd looks up by prefix (``auth_``, ``smtp_``).

        aiosmtpd's constructor finds AUTH mechanisms and commands with
        ``inspect.getmembers(self)`` and ``dir(self)``, which otherwise evaluate
        every attribute of every new connection (~12% of a loaded gateway's time).
        """
        return dispatch_names(type(self), ("auth_", "smtp_"))

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a fast path for the plain ``<local@domain>`` form.

        aiosmtpd parses every MAIL/RCPT argument with the e-mail header parser
        (~10% of a loaded gateway's time); a dot-atom address in angle brackets
        gives the same result with one regular expression (a property test holds
        the two to each other).  Anything else goes to aiosmtpd.  A domain with
        one trailing dot (``<bob@example.org.>``, a root-anchored name) is
        taken as Postfix takes it, where aiosmtpd's parser would call it malformed.
        The parameters after the address are kept as written in `written`
        (aiosmtpd hands the hooks upper-cased ones; ENVID and ORCPT are
        case-sensitive), so MAIL and RCPT are parsed once.
        """
        address, rest = self._parse_path(arg)
        if address is None and arg and (dotted := _TRAILING_DOT.match(arg)) is not None:
            inner, rest = self._parse_path(f"<{dotted['address']}>{dotted['rest']}")
            if inner:
                address = inner + "."
        self.written = (rest or "").split() if address else []
        return address, rest

    def _parse_path(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg) if arg else None
        if match is None:
            try:
                result: tuple[str | None, str | None] = super()._getaddr(arg)
            except Exception:  # aiosmtpd's parser crashes on some junk ("<", ".@["): a syntax error
                return None, None
            return result
        address = match["address"]
        if self.local_part_limit and len(address.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return address, match["rest"].lstrip()

    # -- connection life cycle ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        gateway = self.gateway
        peer = transport.get_extra_info("peername")
        if self.state is not None:  # STARTTLS: the same session continues over TLS
            super().connection_made(transport)
            return
        peer_ip = parse_ip(peer[0]) if peer else None
        limit = self.setup.settings
        key = str(peer_ip)
        if gateway.sessions >= limit.max_sessions or gateway.per_ip[key] >= limit.max_sessions_per_ip:
            gateway.stats["sessions_refused"] += 1
            log.warning("refusing connection from %s: too many sessions", key)
            cast(asyncio.WriteTransport, transport).write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        gateway.open.add(self)
        gateway.per_ip[key] += 1
        self.counted_ip = key
        gateway.stats["sessions"] += 1
        assert peer_ip is not None
        if self._proxy_timeout is not None and not self.setup.is_trusted(peer_ip):
            self._proxy_timeout = None  # a PROXY header is believed only from a trusted proxy
        # From a trusted proxy, judge the client its PROXY header or XCLIENT names, not the proxy.
        waiting = self.setup.is_trusted(peer_ip)
        self.state = gateway.new_state(self.setup, peer_ip, begin=not waiting and self._proxy_timeout is None)
        self.state.awaiting_xclient = waiting and self._proxy_timeout is None
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.counted_ip is None:
            return
        gateway = self.gateway
        gateway.open.discard(self)
        gateway.per_ip[self.counted_ip] -= 1
        if gateway.per_ip[self.counted_ip] <= 0:
            del gateway.per_ip[self.counted_ip]
        self.counted_ip = None
        state = self.state
        if state is not None:
            logs.info(sessions, self.summary(state))
            state.session.close()
            if state.transaction is not None:
                transaction, state.transaction = state.transaction, None
                asyncio.get_running_loop().create_task(transaction.abort())
        super().connection_lost(error)

    def summary(self, state: SessionState) -> str:
        """The session in one line, in the shape of Postfix's smtpd lines (for fail2ban and log summaries):
        ``session ID: client=NAME[IP] helo=<…> from=<…> to=<…,…> action=… reply="…"``."""
        session, refused = state.session, self.refused
        if refused is not None:
            action, reply = refused.action.value, str(refused.reply)
        else:
            action, reply = ("accept" if self.recipients else "none"), ""
        name = printable(session.ptr_name or "unknown", 100)
        helo = printable(session.helo_given or "", 100)
        sender = printable(session.sender_address or "", 200) if session.sender_given is not None else ""
        to = ",".join(printable(item, 200) for item in self.recipients[:20])
        text = printable(reply, 300).replace('"', "'")
        return (
            f"session {state.id}: client={name}[{state.client_ip}] helo=<{helo}> from=<{sender}> to=<{to}> "
            f'action={action} reply="{text}"'
        )

    def eof_received(self) -> bool | None:
        """The client closed its side: end the session now.

        aiosmtpd stops reading but keeps the half-open transport until the
        command timeout, so a client that connects and hangs up (a port probe)
        held a session slot, and a draining gateway waited for it, for minutes.
        """
        super().eof_received()
        return False

    def shut_down(self) -> None:
        """The gateway is stopping and this session did not finish in time: 421 and close.

        A message whose DATA the client had not finished is not taken: it got
        no 250, so the client keeps it and tries again later.
        """
        transport = self.transport
        if transport is not None and not transport.is_closing():
            cast(asyncio.WriteTransport, transport).write(b"421 4.3.2 Service shutting down, try again later\r\n")
            transport.close()

    async def push(self, status: Any) -> None:
        """Send one reply line; the lines of a multi-line reply (``250-…``) are held and go out with its last
        line in one write (aiosmtpd writes each line alone: nine sends for one EHLO reply)."""
        more = status[3:4] == "-"
        if self.hello_reply:
            self.hello_reply = more  # until the last line of the HELO/EHLO reply
        elif self.session is not None and self.session.extended_smtp:
            status = with_enhanced_code(status)
        self.lines += status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") + b"\r\n"
        if more:
            return
        reply, self.lines = bytes(self.lines), bytearray()
        self._writer.write(reply)
        await self._writer.drain()
        if self.close_after_reply and self.transport is not None:
            self.transport.close()

    # -- ESMTP parameters: passed on as written, DSN only when the destination offers it ---------------
    def _getparams(self, params: Any) -> dict[str, str | bool] | None:
        result: dict[str, str | bool] | None = super()._getparams(params)
        if result is not None and self.offer.dsn:
            for name in DSN_MAIL | DSN_RCPT:
                result.pop(name, None)  # aiosmtpd does not know them; the next hop does
        return result

    # -- DATA, streamed to the destination ---------------------------------------------------------------
    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        """Like aiosmtpd's DATA, but each block of lines goes to the destination as it arrives.

        The message is never held whole: lines are read, made content
        (`esmtp.content_line`), gathered into blocks of `BLOCK` bytes and
        written to the transaction.  The end of data is only CRLF.CRLF.  A
        message over the size limit, with a line over the line limit, or (with
        ``bare_line_ends = "reject"``) with a bare CR or LF is read to its end
        and refused; the destination never gets its final dot.
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        hooks, state = self.gateway.hooks, self.state
        assert state is not None
        opened = await hooks.open_data(self, state)
        if opened is not None:
            await self.push(opened)
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        transaction = state.transaction
        assert transaction is not None
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        problem, size, bare = "", 0, False
        limit = self.data_size_limit or 0
        reject_bare = self.setup.settings.bare_line_ends == "reject"
        block = bytearray(hooks.headers(self, state))
        while self.transport is not None:
            try:
                raw = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                problem = problem or "500 5.5.6 Line too long (see RFC 5321 4.5.3.1.6)"
                await self._reader.readexactly(exc.consumed)
                continue
            except asyncio.IncompleteReadError:
                break
            if raw == b".\r\n":
                break
            size += len(raw)
            if limit and size > limit:
                problem = problem or "552 5.3.4 Message size exceeds fixed maximum message size"
            if problem:
                continue  # read to the end; nothing more goes out
            line, found = content_line(raw)
            bare = bare or found
            if found and reject_bare:
                problem = "554 5.5.2 Message has a bare CR or LF; lines must end in CRLF"
                continue
            block += line
            if len(block) >= BLOCK:
                self._reset_timeout()  # a big message may take longer than one command's timeout
                try:
                    await transaction.write(bytes(block))
                except OSError:
                    problem = str(LOST)
                block.clear()
        if self.transport is None:  # the client went away: connection_lost aborts the transaction
            return
        if not problem:
            try:
                await transaction.write(bytes(block))
            except OSError:
                problem = str(LOST)
        block.clear()
        status = await hooks.end_data(self, state, problem, bare)
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push(status)

    # -- XCLIENT (Postfix's, from trusted proxies only) ----------------------------------------------
    async def smtp_XCLIENT(self, arg: str | None) -> None:
        state = self.state
        assert state is not None and self.session is not None
        peer = self.session.peer
        if not self.setup.is_trusted(parse_ip(peer[0]) if peer else None) or self._proxy_timeout is not None:
            await self.push("550 5.7.0 Authorization required")
            return
        address = None
        for item in (arg or "").split():
            name, _, value = item.partition("=")
            if name.upper() == "ADDR" and value.upper() not in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
                try:
                    address = parse_ip(value[5:] if value.upper().startswith("IPV6:") else value)
                except ValueError:
                    await self.push("501 5.5.4 Bad XCLIENT ADDR")
                    return
        if address is None:
            await self.push("501 5.5.4 XCLIENT needs ADDR=")
            return
        state.session.close()
        self.state = self.gateway.new_state(self.setup, address, state.id)
        self.session.host_name = None
        self._set_rset_state()  # type: ignore[no-untyped-call]
        await self.push(f"220 {self.hostname} ESMTP rdnsgate")


class _Hooks:
    """aiosmtpd handler: each hook builds the request, awaits the decision, renders the reply."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def __dir__(self) -> list[str]:
        """Only the hooks (``handle_``, ``auth_``): aiosmtpd's constructor looks them up with
        ``inspect.getmembers`` and ``dir`` for every new connection (~4% of a loaded gateway's time)."""
        return dispatch_names(type(self), ("auth_", "handle_"))

    @staticmethod
    def _state(server: GatewaySMTP) -> SessionState:
        assert server.state is not None
        return server.state

    async def handle_PROXY(self, server: GatewaySMTP, session: Session, envelope: Envelope, proxy_data: Any) -> bool:
        state = self._state(server)
        source = getattr(proxy_data, "src_addr", None)
        if source is not None:
            try:
                state.client_ip = parse_ip(str(source))
            except ValueError:
                log.warning("session %s: PROXY header with a bad source %r", state.id, source)
                return False
        state.session.begin(state.client_ip)
        return True

    async def _helo(self, server: GatewaySMTP, session: Session, hostname: str) -> str | None:
        """Check the HELO name; None when the session goes on, else the refusal to send."""
        state = self._state(server)
        name = hostname.strip()
        if state.awaiting_xclient:
            session.host_name = name
            return None
        refusal = await state.session.helo(name)
        if refusal is not None:
            return self._refuse(server, refusal)
        session.host_name = name
        return None

    def _refuse(self, server: GatewaySMTP, decision: Decision) -> str:
        assert decision.reply is not None
        self.gateway.count(decision)
        server.refused = decision
        server.close_after_reply = decision.close
        return str(decision.reply)

    async def handle_HELO(self, server: GatewaySMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        refusal = await self._helo(server, session, hostname)
        server.offer = server.setup.destination.offer()
        return refusal or f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        refusal = await self._helo(server, session, hostname)
        server.hello_reply = refusal is None
        if refusal is not None:
            return [refusal]
        setup = server.setup
        offer = server.offer = setup.destination.offer()
        keywords, server.data_size_limit = ehlo_keywords(
            setup.settings.max_message_size, offer.size, offer.eightbit, offer.smtputf8, offer.dsn
        )
        lines = [responses[0], *(f"250-{item}" for item in keywords)]
        lines += [item for item in responses if item.startswith("250-STARTTLS")]
        peer = session.peer
        if setup.is_trusted(parse_ip(peer[0]) if peer else None) and not setup.settings.proxy_protocol:
            lines.append("250-XCLIENT ADDR NAME HELO PROTO")
        return [*lines, "250 HELP"]

    async def handle_MAIL(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        state = self._state(server)
        await self._end_transaction(state)
        if state.awaiting_xclient:  # a trusted proxy that sends mail itself is judged itself
            state.awaiting_xclient = False
            state.session.begin(state.client_ip)
        if not envelope.smtp_utf8 and not address.isascii():
            return NEEDS_SMTPUTF8  # RFC 6531 §3.4: a UTF-8 address needs the SMTPUTF8 parameter
        parameters = server.written
        keywords = {keyword(item) for item in parameters}
        if envelope.smtp_utf8 and not server.offer.smtputf8:
            return "555 5.5.4 SMTPUTF8 is not offered: the next hop does not take it"
        if "BODY" in keywords and "BODY=8BITMIME" in options and not server.offer.eightbit:
            return "555 5.5.4 BODY=8BITMIME is not offered: the next hop does not take it"
        refusal = await state.session.mail(address)
        if refusal is not None:
            return self._refuse(server, refusal)
        state.mail_parameters = passed_on(parameters, PASSED_MAIL)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        gateway, setup, state = self.gateway, server.setup, self._state(server)
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if "@" not in address or domain not in setup.relay_domains:
            gateway.stats["relay_denied"] += 1
            return f"554 5.7.1 <{printable(address, 100)}>: Relay access denied"
        if not envelope.smtp_utf8 and not address.isascii():
            return NEEDS_SMTPUTF8
        if len(envelope.rcpt_tos) >= setup.settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        decision = await state.session.rcpt(address)
        if decision.refused and decision.reply is not None:
            return self._refuse(server, decision)
        report = await state.session.report()
        state.accepted = (report, decision)
        if state.transaction is None:
            begun = await setup.destination.begin(envelope.mail_from or "", state.mail_parameters)
            if isinstance(begun, Answer):
                return str(begun)
            state.transaction = begun
        answer = await state.transaction.rcpt(address, passed_on(server.written, DSN_RCPT))
        if answer.ok:
            envelope.rcpt_tos.append(address)
            server.recipients.append(address)
            envelope.rcpt_options.extend(options)
        return str(answer)

    async def open_data(self, server: GatewaySMTP, state: SessionState) -> str | None:
        """DATA: None when the destination waits for the content, else the reply that refuses it."""
        transaction = state.transaction
        if transaction is None or state.accepted is None:
            return "554 5.5.1 No valid recipients"
        refused = await transaction.open_data()
        if refused is not None:
            state.transaction = None
            return str(refused)
        return None

    def headers(self, server: GatewaySMTP, state: SessionState) -> bytes:
        assert state.accepted is not None and server.session is not None
        return self._headers(server, server.session, state, state.accepted[0])

    async def end_data(self, server: GatewaySMTP, state: SessionState, problem: str, bare: bool) -> str:
        """The end of data: the destination's answer, or `problem` (the transaction is then abandoned)."""
        gateway = self.gateway
        transaction, state.transaction = state.transaction, None
        assert transaction is not None and state.accepted is not None and server.envelope is not None
        if bare:
            gateway.stats["bare_line_ends"] += 1
        if problem:
            await transaction.abort()
            gateway.stats["messages_refused_by_gateway"] += 1
            return problem
        answer = await transaction.end()
        report, decision = state.accepted  # nothing the checks see has changed since RCPT
        gateway.count(decision)
        state.session.record(report, decision, list(server.envelope.rcpt_tos))
        gateway.stats["messages_accepted" if answer.ok else "messages_refused_by_next_hop"] += 1
        return str(answer)

    async def handle_RSET(self, server: GatewaySMTP, session: Session, envelope: Envelope) -> str:
        await self._end_transaction(self._state(server))
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server: GatewaySMTP, session: Session, envelope: Envelope) -> str:
        await self._end_transaction(self._state(server))
        return "221 2.0.0 Bye"

    async def handle_exception(self, error: Exception) -> str:
        self.gateway.stats["internal_errors"] += 1
        log.error("internal error in an SMTP session", exc_info=error)
        return INTERNAL_ERROR

    @staticmethod
    async def _end_transaction(state: SessionState) -> None:
        state.accepted = None
        if state.transaction is not None:
            transaction, state.transaction = state.transaction, None
            await transaction.abort()

    def _headers(self, server: GatewaySMTP, session: Session, state: SessionState, report: Report) -> bytes:
        gateway = self.gateway
        helo = printable(state.session.helo_name or "unknown", 100).replace("(", "").replace(")", "")
        ptr = report.iprev.confirmed_name or "unknown"
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl:
            protocol += "S"
        received = (
            f"Received: from {helo} ({printable(ptr, 100)} [{state.client_ip}])\r\n"
            f"\tby {printable(gateway.hostname, 100)} (rdnsgate) with {protocol} id {state.id};\r\n"
            f"\t{format_datetime(datetime.now(UTC))}\r\n"
        )
        results = f"Authentication-Results: {authentication_results(server.setup.policy.authserv_id, report.iprev)}\r\n"
        return (results + received).encode("ascii", "replace")


# aiosmtpd reads handle_EHLO's signature for every new connection (to tell its old form from the new one);
# a function that carries its signature is not inspected again (~3% of a loaded gateway's time).
_Hooks.handle_EHLO.__signature__ = inspect.signature(_Hooks.handle_EHLO)  # type: ignore[attr-defined]


async def serve(
    gateway: Gateway,
    listen: Iterable[tuple[str, int]],
    *,
    reuse_port: bool = False,
    bound: Iterable[list[socket.socket] | None] = (),
) -> list[asyncio.base_events.Server]:
    """Listen on each (host, port), or on the sockets bound for it beforehand (`bound`, in the same order)."""
    loop = asyncio.get_running_loop()
    servers = []
    given = list(bound)
    for index, (host, port) in enumerate(listen):
        sockets = given[index] if index < len(given) else None
        if sockets:
            servers += [await loop.create_server(gateway.protocol, sock=sock) for sock in sockets]
        else:
            servers.append(
                await loop.create_server(
                    gateway.protocol, host=host, port=port, reuse_address=True, reuse_port=reuse_port
                )
            )
        log.info("gateway listening on %s", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return servers


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"gateway.tls_cert/tls_key: cannot load {cert} / {key}: {exc}") from None
    return context


class GatewayService:
    """The gateway as a service of the runtime: listeners, sessions, the next hop."""

    name = "gateway"

    def __init__(self, runtime: Runtime, *, worker: int | None = None) -> None:
        settings = runtime.settings.gateway
        self.runtime = runtime
        self.worker = worker
        self.listen = [parse_listen(item) for item in settings.listen]  # a bad address fails before anything starts
        hostname = runtime.hostname
        destination = destination_for(
            settings.next_hop, settings.maildir, timeout=settings.next_hop_timeout, helo_name=hostname
        )
        self.gateway = Gateway(
            settings,
            runtime.engine,
            Policy.from_settings(settings, "gateway", hostname, runtime.node, runtime.signer),
            destination,
            runtime.decisions,
            hostname=hostname,
            tls_context=tls_context(settings.tls_cert, settings.tls_key),
            whitelist=runtime,
        )
        self.servers: list[asyncio.base_events.Server] = []
        self._untrack: Callable[[], None] | None = None
        self._retiring: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        gateway, settings = self.gateway, self.runtime.settings.gateway
        await self.runtime.load_whitelist()
        self.runtime.refresh_whitelist(settings.whitelist_refresh)
        self.runtime.guard_resolver()
        self._untrack = METRICS.track(gateways=gateway)
        await gateway.destination.probe()  # learn what the next hop offers, so EHLO promises no more
        listeners = self.runtime.listeners
        bound = [listeners.take(item) for item in settings.listen] if listeners else []
        self.servers = await serve(gateway, self.listen, reuse_port=self.worker is not None, bound=bound)
        log.info(
            "rdnsgate gateway%s ready: profile %s, next hop %s, relay domains %s",
            "" if self.worker is None else f" worker {self.worker}",
            gateway.policy.profile.name,
            gateway.destination.describe(),
            ", ".join(sorted(gateway.relay_domains)) or "(none: every recipient is refused)",
        )

    def prepare_reload(self, settings: Settings) -> Commit:
        """A new setup from `settings.gateway` for the sessions that connect after the commit."""
        new = settings.gateway
        runtime, gateway, old = self.runtime, self.gateway, self.gateway.setup
        policy = Policy.from_settings(new, "gateway", runtime.hostname, runtime.node, runtime.signer)
        context = tls_context(new.tls_cert, new.tls_key)
        same_hop = (new.next_hop, new.maildir, new.next_hop_timeout) == (
            old.settings.next_hop,
            old.settings.maildir,
            old.settings.next_hop_timeout,
        )
        destination = (
            old.destination
            if same_hop
            else destination_for(new.next_hop, new.maildir, timeout=new.next_hop_timeout, helo_name=runtime.hostname)
        )

        async def commit() -> None:
            if not same_hop:
                await destination.probe()
            gateway.replace(Setup.of(new, runtime.engine, policy, destination, context))
            runtime.refresh_whitelist(new.whitelist_refresh)
            if not same_hop:
                self._retiring.append(asyncio.get_running_loop().create_task(self._retire(old)))

        return commit

    async def _retire(self, setup: Setup) -> None:
        """Close a replaced next hop once no session uses it."""
        while self.gateway.in_use(setup):
            await asyncio.sleep(1.0)
        await setup.destination.close()

    async def finished(self) -> None:
        await asyncio.Event().wait()  # the gateway never ends on its own

    async def drain(self, deadline: Deadline) -> None:
        """No new connections; sessions in progress may finish until `deadline`, then get 421 4.3.2."""
        for server in self.servers:
            server.close()
        gateway = self.gateway
        log.info(
            "stopping: no new connections; %d sessions may finish within %.0f s", gateway.sessions, deadline.remaining()
        )
        while gateway.sessions and not deadline.passed():
            await asyncio.sleep(min(0.05, deadline.remaining()) or 0)
        if gateway.open:
            log.warning("closing %d sessions still open: 421 4.3.2", len(gateway.open))
        for protocol in list(gateway.open):
            protocol.shut_down()

    async def stop(self) -> None:
        if self._untrack is not None:
            self._untrack()
        for task in self._retiring:
            task.cancel()
        await self.gateway.destination.close()
