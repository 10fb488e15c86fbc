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
import ipaddress
import logging
import re
import secrets
import ssl
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any, cast

from aiosmtpd.smtp import SMTP, Envelope, Session

from rdnsgate.checks.names import parse_ip
from rdnsgate.checks.sender import parse_reverse_path
from rdnsgate.config import GatewaySettings
from rdnsgate.frontends.relay import Answer, Destination, Transaction
from rdnsgate.model import Check, CheckResult, IPAddress, IprevReport, Lookup, Report, Result, Status, WhitelistEntry
from rdnsgate.policy.decide import Decision, decide
from rdnsgate.policy.decision_log import DecisionLog, make_record
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.headers import authentication_results, printable
from rdnsgate.policy.profiles import Profile, Stage, switched_off
from rdnsgate.policy.whitelist import match

log = logging.getLogger(__name__)

SEVERITY = {Result.PASS: 0, Result.NONE: 0, Result.TEMPERROR: 1, Result.FAIL: 2, Result.PERMERROR: 3}
INTERNAL_ERROR = "451 4.3.0 Internal error, try again later"
NOT_CHECKED = CheckResult(Check.SENDER, Result.NONE, "not-given", "no MAIL FROM yet")
_DISPATCH_NAMES: dict[type, list[str]] = {}
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_PLAIN_PATH = re.compile(
    rf"<(?P<address>{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    rf"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*)>(?P<rest>(?:[ \t].*)?)\Z"
)


def _worse(old: CheckResult | None, new: CheckResult) -> CheckResult:
    return new if old is None or SEVERITY[new.result] >= SEVERITY[old.result] else old


@dataclass
class SessionState:
    """What the gateway knows about one SMTP session."""

    id: str
    client_ip: IPAddress
    iprev_task: asyncio.Task[IprevReport] | None = None
    helo_name: str | None = None
    helo: CheckResult | None = None
    align: CheckResult | None = None
    sender_address: str | None = None
    sender_domain: str | None = None
    sender: CheckResult = NOT_CHECKED
    whitelisted: WhitelistEntry | None = None
    awaiting_xclient: bool = False  # a trusted proxy has not yet said who the client is
    transaction: Transaction | None = None
    accepted: tuple[Report, Decision] | None = None  # the decision that let this transaction's recipients in


class Gateway:
    """Everything the sessions share: settings, engine, profile, destination, whitelist, log, limits."""

    def __init__(
        self,
        settings: GatewaySettings,
        engine: Engine,
        profile: Profile,
        destination: Destination,
        decisions: DecisionLog,
        *,
        hostname: str,
        switched_off: frozenset[Check] = frozenset(),
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.profile = profile
        self.destination = destination
        self.decisions = decisions
        self.hostname = hostname
        self.authserv_id = settings.authserv_id or hostname
        self.switched_off = switched_off
        self.tls_context = tls_context
        self.relay_domains = frozenset(item.lower().rstrip(".") for item in settings.relay_domains)
        self.trusted = tuple(ipaddress.ip_network(item, strict=False) for item in settings.trusted_proxies)
        self.whitelist: list[WhitelistEntry] = []
        self.store: Any = None  # where the whitelist is reloaded from
        self.sessions = 0
        self.per_ip: Counter[str] = Counter()
        self.stats: Counter[str] = Counter()
        self.hooks = _Hooks(self)  # stateless: one for all sessions

    # -- shared helpers ---------------------------------------------------------------------------
    def is_trusted(self, ip: IPAddress | None) -> bool:
        return ip is not None and any(ip.version == net.version and ip in net for net in self.trusted)

    def protocol(self) -> GatewaySMTP:
        return GatewaySMTP(self, self.hooks)

    def whitelisted(self, state: SessionState) -> WhitelistEntry | None:
        return match(self.whitelist, state.client_ip, state.sender_domain, datetime.now(UTC))

    def start_iprev(self, state: SessionState) -> None:
        if Check.IPREV in self.switched_off:
            return
        state.iprev_task = asyncio.get_running_loop().create_task(self.engine.iprev(state.client_ip))

    async def iprev(self, state: SessionState) -> IprevReport:
        if state.iprev_task is None:
            return IprevReport(state.client_ip, switched_off(Check.IPREV), Lookup("", "PTR", Status.NODATA))
        return await asyncio.shield(state.iprev_task)

    async def report(self, state: SessionState) -> Report:
        iprev = await self.iprev(state)
        helo = state.helo or CheckResult(Check.HELO, Result.NONE, "not-given", "no HELO yet")
        align = state.align or CheckResult(Check.HELO_ALIGN, Result.NONE, "not-checked", "no HELO yet")
        return Report(
            ip=state.client_ip,
            iprev=iprev,
            helo_name=state.helo_name,
            helo=helo,
            helo_align=align,
            sender_address=state.sender_address,
            sender_domain=state.sender_domain,
            sender=state.sender,
        )

    def decide(self, report: Report, state: SessionState) -> Decision:
        entry = state.whitelisted
        return decide(
            report,
            self.profile,
            whitelisted=entry.describe() if entry else None,
            authserv_id=self.authserv_id,
            check_url=self.settings.check_url or None,
            footer=self.settings.reject_footer or None,
        )

    def log(self, state: SessionState, report: Report, decision: Decision, recipients: Iterable[str] = ()) -> None:
        self.stats[f"decision_{decision.action.value}"] += 1
        self.decisions.record(
            make_record(report, decision, session=state.id, recipients=list(recipients), node=self.hostname)
        )


class GatewaySMTP(SMTP):
    """One client connection.  aiosmtpd runs the protocol; the hooks below take the decisions."""

    def __init__(self, gateway: Gateway, hooks: _Hooks) -> None:
        settings = gateway.settings
        super().__init__(
            hooks,
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            hostname=gateway.hostname,
            ident="ESMTP rdnsgate",
            tls_context=gateway.tls_context,
            timeout=settings.command_timeout,
            proxy_protocol_timeout=10.0 if settings.proxy_protocol else None,
        )
        self.gateway = gateway
        self.state: SessionState | None = None
        self.counted_ip: str | None = None
        self.close_after_reply = False

    def __dir__(self) -> list[str]:
        """Only the names aiosmtpd looks up by prefix (``auth_``, ``smtp_``).

        aiosmtpd's constructor finds AUTH mechanisms and commands with
        ``inspect.getmembers(self)`` and ``dir(self)``, which otherwise evaluate
        every attribute of every new connection (~12% of a loaded gateway's time).
        """
        cls = type(self)
        names = _DISPATCH_NAMES.get(cls)
        if names is None:
            names = _DISPATCH_NAMES[cls] = [name for name in dir(cls) if name.startswith(("auth_", "smtp_"))]
        return list(names)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's address parser, with a fast path for the plain ``<local@domain>`` form.

        aiosmtpd parses every MAIL/RCPT argument with the e-mail header parser
        (~10% of a loaded gateway's time); a dot-atom address in angle brackets
        gives the same result with one regular expression (a property test holds
        the two to each other).  Anything else goes to aiosmtpd.
        """
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
        limit = gateway.settings
        key = str(peer_ip)
        if gateway.sessions >= limit.max_sessions or gateway.per_ip[key] >= limit.max_sessions_per_ip:
            gateway.stats["sessions_refused"] += 1
            log.warning("refusing connection from %s: too many sessions", key)
            cast(asyncio.WriteTransport, transport).write(b"421 4.7.0 Too many connections, try again later\r\n")
            transport.close()
            return
        gateway.sessions += 1
        gateway.per_ip[key] += 1
        self.counted_ip = key
        gateway.stats["sessions"] += 1
        assert peer_ip is not None
        self.state = SessionState(id=secrets.token_hex(6), client_ip=peer_ip)
        if self._proxy_timeout is not None and not gateway.is_trusted(peer_ip):
            self._proxy_timeout = None  # a PROXY header is believed only from a trusted proxy
        if self._proxy_timeout is None and gateway.is_trusted(peer_ip):
            self.state.awaiting_xclient = True  # judge the client XCLIENT names, not the proxy
        elif self._proxy_timeout is None:
            gateway.start_iprev(self.state)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self.counted_ip is None:
            return
        gateway = self.gateway
        gateway.sessions -= 1
        gateway.per_ip[self.counted_ip] -= 1
        if gateway.per_ip[self.counted_ip] <= 0:
            del gateway.per_ip[self.counted_ip]
        self.counted_ip = None
        state = self.state
        if state is not None:
            if state.iprev_task is not None and not state.iprev_task.done():
                state.iprev_task.cancel()
            if state.transaction is not None:
                transaction, state.transaction = state.transaction, None
                asyncio.get_running_loop().create_task(transaction.abort())
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        await super().push(status)
        if self.close_after_reply and self.transport is not None:
            self.transport.close()

    # -- XCLIENT (Postfix's, from trusted proxies only) ----------------------------------------------
    async def smtp_XCLIENT(self, arg: str | None) -> None:
        state = self.state
        assert state is not None and self.session is not None
        peer = self.session.peer
        if not self.gateway.is_trusted(parse_ip(peer[0]) if peer else None) or self._proxy_timeout is not None:
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
        if state.iprev_task is not None:
            state.iprev_task.cancel()
        self.state = SessionState(id=state.id, client_ip=address)
        self.gateway.start_iprev(self.state)
        self.session.host_name = None
        self._set_rset_state()  # type: ignore[no-untyped-call]
        await self.push(f"220 {self.hostname} ESMTP rdnsgate")


class _Hooks:
    """aiosmtpd handler: each hook builds the request, awaits the decision, renders the reply."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

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
        self.gateway.start_iprev(state)
        return True

    async def _helo(self, server: GatewaySMTP, session: Session, hostname: str) -> str | None:
        """Check the HELO name; None when the session goes on, else the refusal to send."""
        gateway, state = self.gateway, self._state(server)
        name = hostname.strip()
        if state.awaiting_xclient:
            session.host_name = name
            return None
        if Check.HELO in gateway.switched_off:
            helo, align = switched_off(Check.HELO), switched_off(Check.HELO_ALIGN)
        else:
            helo, align = await gateway.engine.helo(name, state.client_ip, await gateway.iprev(state))
        state.helo = _worse(state.helo, helo)
        state.align = _worse(state.align, align)
        if state.helo is helo:
            state.helo_name = name
        state.whitelisted = gateway.whitelisted(state)
        report = await gateway.report(state)
        decision = gateway.decide(report, state)
        if decision.refused and decision.stage is Stage.HELO and decision.reply is not None:
            gateway.log(state, report, decision)
            server.close_after_reply = decision.close
            return str(decision.reply)
        session.host_name = name
        return None

    async def handle_HELO(self, server: GatewaySMTP, session: Session, envelope: Envelope, hostname: str) -> str:
        refusal = await self._helo(server, session, hostname)
        return refusal or f"250 {server.hostname}"

    async def handle_EHLO(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        refusal = await self._helo(server, session, hostname)
        if refusal is not None:
            return [refusal]
        peer = session.peer
        if self.gateway.is_trusted(parse_ip(peer[0]) if peer else None) and not self.gateway.settings.proxy_protocol:
            responses.insert(-1, "250-XCLIENT ADDR NAME HELO PROTO")
        return responses

    async def handle_MAIL(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        gateway, state = self.gateway, self._state(server)
        await self._end_transaction(state)
        if state.awaiting_xclient:  # a trusted proxy that sends mail itself is judged itself
            state.awaiting_xclient = False
            gateway.start_iprev(state)
        form = parse_reverse_path(address)
        state.sender_address = form.address
        state.sender_domain = form.domain or None
        if Check.SENDER in gateway.switched_off:
            state.sender = switched_off(Check.SENDER)
        else:
            state.sender = await gateway.engine.sender_check(form)
        state.whitelisted = gateway.whitelisted(state)
        report = await gateway.report(state)
        decision = gateway.decide(report, state)
        if decision.refused and decision.stage in (Stage.HELO, Stage.MAIL) and decision.reply is not None:
            gateway.log(state, report, decision)
            server.close_after_reply = decision.close
            return str(decision.reply)
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: GatewaySMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        gateway, state = self.gateway, self._state(server)
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if "@" not in address or domain not in gateway.relay_domains:
            gateway.stats["relay_denied"] += 1
            return f"554 5.7.1 <{printable(address, 100)}>: Relay access denied"
        if len(envelope.rcpt_tos) >= gateway.settings.max_recipients:
            return "452 4.5.3 Too many recipients"
        report = await gateway.report(state)
        decision = gateway.decide(report, state)
        if decision.refused and decision.reply is not None:
            gateway.log(state, report, decision, [address])
            server.close_after_reply = decision.close
            return str(decision.reply)
        state.accepted = (report, decision)
        if state.transaction is None:
            begun = await gateway.destination.begin(envelope.mail_from or "", list(envelope.mail_options))
            if isinstance(begun, Answer):
                return str(begun)
            state.transaction = begun
        answer = await state.transaction.rcpt(address)
        if answer.ok:
            envelope.rcpt_tos.append(address)
            envelope.rcpt_options.extend(options)
        return str(answer)

    async def handle_DATA(self, server: GatewaySMTP, session: Session, envelope: Envelope) -> str:
        gateway, state = self.gateway, self._state(server)
        transaction, state.transaction = state.transaction, None
        if transaction is None or not envelope.rcpt_tos or state.accepted is None:
            return "554 5.5.1 No valid recipients"
        report, decision = state.accepted  # nothing the checks see has changed since RCPT
        content = envelope.original_content or b""
        message = self._headers(server, session, state, report) + content
        answer = await transaction.data(message)
        gateway.log(state, report, decision, list(envelope.rcpt_tos))
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
        helo = printable(state.helo_name or "unknown", 100).replace("(", "").replace(")", "")
        ptr = report.iprev.confirmed_name or "unknown"
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        if session.ssl:
            protocol += "S"
        received = (
            f"Received: from {helo} ({printable(ptr, 100)} [{state.client_ip}])\r\n"
            f"\tby {printable(gateway.hostname, 100)} (rdnsgate) with {protocol} id {state.id};\r\n"
            f"\t{format_datetime(datetime.now(UTC))}\r\n"
        )
        results = f"Authentication-Results: {authentication_results(gateway.authserv_id, report.iprev)}\r\n"
        return (results + received).encode("ascii", "replace")


async def serve(
    gateway: Gateway, listen: Iterable[tuple[str, int]], *, reuse_port: bool = False
) -> list[asyncio.base_events.Server]:
    loop = asyncio.get_running_loop()
    servers = []
    for host, port in listen:
        servers.append(
            await loop.create_server(gateway.protocol, host=host, port=port, reuse_address=True, reuse_port=reuse_port)
        )
        log.info("gateway listening on %s", f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
    return servers
