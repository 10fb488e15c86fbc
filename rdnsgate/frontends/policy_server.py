"""The Postfix SMTPD policy delegation service (``check_policy_service``).

The protocol, as Postfix's SMTPD_POLICY_README gives it: a request is
``name=value`` lines ended by an empty line, attributes in any order, unknown
ones ignored; the service answers one ``action=...`` line and an empty line;
the connection is kept for more requests.  "In case of trouble the policy
server must not send a reply.  Instead the server must log a warning and
disconnect": a line over 512 bytes, more than 100 attributes, a request over
16 KiB, a malformed line or an internal error closes the connection, and
Postfix retries later.

Replies follow the same profiles, whitelist and overrides as the gateway:
``DUNNO`` when nothing is wrong (never ``OK``, which would skip later
restrictions), ``NNN X.Y.Z text`` to refuse, ``DEFER_IF_PERMIT X.Y.Z text``
for a temporary error, and in ``monitor`` ``PREPEND Authentication-Results:
...`` once per message.  Evaluations are cached per Postfix session
(``instance``), so a message's many RCPTs cost one evaluation.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rdnsgate.checks.names import parse_ip
from rdnsgate.config import parse_listen
from rdnsgate.model import Check, Lookup, Report
from rdnsgate.policy.decide import Decision, decide
from rdnsgate.policy.decision_log import DecisionLog, make_record
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import Action, Profile, Stage, switched_off
from rdnsgate.policy.whitelist import match

log = logging.getLogger(__name__)

REPORT_TTL = 60.0  # seconds a report may serve later sessions, at most
MAX_LINE = 512
MAX_ATTRIBUTES = 100
MAX_REQUEST = 16 * 1024
STAGE_OF_STATE = {"EHLO": Stage.HELO, "HELO": Stage.HELO, "MAIL": Stage.MAIL, "RCPT": Stage.RCPT}
ORDER = {Stage.HELO: 0, Stage.MAIL: 1, Stage.RCPT: 2}


class ProtocolError(Exception):
    """The peer broke the protocol: log a warning and disconnect."""


_REQUEST = re.compile(rb"(?:[A-Za-z0-9_]+=[^\n]*\n)*[A-Za-z0-9_]+=[^\n]*\Z")


class RequestParser:
    """Sans-I/O: bytes in, complete requests (dicts) out; raises ProtocolError on trouble.

    A request is cut at its empty line and checked as a whole: the size, the
    number of lines, each line's length and the ``name=value`` form.
    """

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> Iterator[dict[str, str]]:
        self._buffer += data
        while True:
            if self._buffer.startswith(b"\n"):  # an empty request
                self._buffer = self._buffer[1:]
                yield {}
                continue
            end = self._buffer.find(b"\n\n")
            if end < 0:
                self._check_partial()
                return
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if len(block) + 2 > MAX_REQUEST:
                raise ProtocolError(f"request larger than {MAX_REQUEST} bytes")
            lines = block.split(b"\n")
            if len(lines) > MAX_ATTRIBUTES:
                raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes")
            if max(map(len, lines)) > MAX_LINE:
                raise ProtocolError(f"line longer than {MAX_LINE} bytes")
            if _REQUEST.match(block) is None:
                bad = next(line for line in lines if _REQUEST.match(line) is None)
                raise ProtocolError(f"malformed line {bad[:60]!r}")
            yield {
                name.decode("ascii"): value.decode("utf-8", "replace")
                for name, _, value in (line.partition(b"=") for line in lines)
            }

    def _check_partial(self) -> None:
        """An unfinished request must already be within the limits."""
        buffer = self._buffer
        if len(buffer) > MAX_REQUEST:
            raise ProtocolError(f"request larger than {MAX_REQUEST} bytes")
        if max(map(len, buffer.split(b"\n"))) > MAX_LINE:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes")
        if buffer.count(b"\n") > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes")


def fresh_for(lookup: Lookup) -> float:
    """How long the answer behind `lookup` stays valid: its TTL, or its negative TTL."""
    return float(lookup.negative_ttl if lookup.negative_ttl is not None else lookup.ttl)


def reply(action: str) -> bytes:
    return f"action={action}\n\n".encode("utf-8", "replace")


@dataclass
class Evaluation:
    report: Report
    decision: Decision
    whitelist: list[Any]  # the whitelist the decision was taken with (reloading replaces the list)


@dataclass
class SessionCache:
    """What one Postfix session (``instance``) has been told, and its evaluations."""

    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)
    tagged: bool = False
    logged: set[str] = field(default_factory=set)


class PolicyService:
    def __init__(
        self,
        engine: Engine,
        profile: Profile,
        decisions: DecisionLog,
        *,
        authserv_id: str,
        switched_off: frozenset[Check] = frozenset(),
        check_url: str | None = None,
        footer: str | None = None,
        max_instances: int = 10_000,
    ) -> None:
        self.engine = engine
        self.profile = profile
        self.decisions = decisions
        self.authserv_id = authserv_id
        self.switched_off = switched_off
        self.check_url = check_url
        self.footer = footer
        self.whitelist: list[Any] = []
        self.store: Any = None
        self.sessions: OrderedDict[str, SessionCache] = OrderedDict()
        self.max_instances = max_instances
        self.requests = 0
        self.evaluations = 0
        # Reports shared across sessions of the same client, HELO and sender, while every DNS
        # answer behind them is still fresh (never longer than REPORT_TTL).
        self.recent: OrderedDict[tuple[str, str, str], tuple[float, Report]] = OrderedDict()

    def _session(self, instance: str) -> SessionCache:
        cache = self.sessions.get(instance)
        if cache is None:
            cache = self.sessions[instance] = SessionCache()
            while len(self.sessions) > self.max_instances:
                self.sessions.popitem(last=False)
        else:
            self.sessions.move_to_end(instance)
        return cache

    async def _evaluate(self, request: dict[str, str], cache: SessionCache) -> Evaluation:
        """The session's report and decision for this HELO and sender, computed once."""
        helo = request.get("helo_name") or None
        sender = request.get("sender", "")
        key = (helo or "", sender)
        known = cache.evaluations.get(key)
        if known is not None and known.whitelist is self.whitelist:
            return known
        if known is not None:
            report = known.report
        elif (recent := self._recent(request, key)) is not None:
            report = recent
        else:
            try:
                ip = parse_ip(request.get("client_address", ""))
            except ValueError:
                raise ProtocolError(
                    f"client_address {request.get('client_address', '')[:60]!r} is no IP address"
                ) from None
            self.evaluations += 1
            report = await self.engine.report(ip, helo, f"<{sender}>" if "sender" in request else None)
            report = self._switch_off(report)
            self._remember(request, key, report)
        whitelist = self.whitelist
        entry = match(whitelist, report.ip, report.sender_domain, datetime.now(UTC))
        decision = decide(
            report,
            self.profile,
            whitelisted=entry.describe() if entry else None,
            authserv_id=self.authserv_id,
            check_url=self.check_url,
            footer=self.footer,
        )
        evaluation = cache.evaluations[key] = Evaluation(report, decision, whitelist)
        return evaluation

    def _recent(self, request: dict[str, str], key: tuple[str, str]) -> Report | None:
        recent_key = (request.get("client_address", ""), *key)
        found = self.recent.get(recent_key)
        if found is None:
            return None
        expires, report = found
        if expires <= time.monotonic():
            del self.recent[recent_key]
            return None
        return report

    def _remember(self, request: dict[str, str], key: tuple[str, str], report: Report) -> None:
        if any(item.temporary for item in report.checks):
            return  # a temporary error is asked again next time
        ttl = min([REPORT_TTL, *(fresh_for(lookup) for item in report.checks for lookup in item.lookups)])
        if ttl <= 0:
            return
        self.recent[(request.get("client_address", ""), *key)] = (time.monotonic() + ttl, report)
        while len(self.recent) > self.max_instances:
            self.recent.popitem(last=False)

    def _switch_off(self, report: Report) -> Report:
        if not self.switched_off:
            return report
        checks = tuple(switched_off(item.check) if item.check in self.switched_off else item for item in report.checks)
        return Report(
            report.ip,
            report.iprev,
            report.helo_name,
            checks[1],
            checks[2],
            report.sender_address,
            report.sender_domain,
            checks[3],
            checks,
        )

    async def answer(self, request: dict[str, str]) -> str:
        """The action for one request (without "action=")."""
        self.requests += 1
        state = request.get("protocol_state", "RCPT").upper()
        instance = request.get("instance", "")
        cache = self._session(instance)
        if state in ("CONNECT", "UNKNOWN") or "client_address" not in request:
            return "DUNNO"
        evaluation = await self._evaluate(request, cache)
        report, decision = evaluation.report, evaluation.decision
        stage = STAGE_OF_STATE.get(state, Stage.RCPT)
        recipient = request.get("recipient", "")
        if decision.refused and decision.stage is not None and ORDER[decision.stage] <= ORDER[stage]:
            self._log(report, decision, request, cache, recipient)
            assert decision.reply is not None
            if decision.action is Action.TEMPFAIL:
                return f"DEFER_IF_PERMIT {decision.reply.enhanced} {decision.reply.text}"
            return str(decision.reply)
        if state in ("RCPT", "DATA", "END-OF-MESSAGE"):
            self._log(report, decision, request, cache, recipient)
            if decision.action is Action.TAG and not cache.tagged:
                cache.tagged = True
                name, value = decision.headers[0]
                return f"PREPEND {name}: {value}"
        return "DUNNO"

    def _log(self, report: Report, decision: Decision, request: dict[str, str], cache: SessionCache, rcpt: str) -> None:
        key = f"{decision.action.value}:{request.get('sender', '')}"
        if key in cache.logged and not decision.refused:
            return  # one record per message accepted, one per refusal
        cache.logged.add(key)
        self.decisions.record(
            make_record(report, decision, session=request.get("instance", ""), recipients=[rcpt] if rcpt else [])
        )

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or "unix socket"
        parser = RequestParser()
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    return
                for request in parser.feed(data):
                    writer.write(reply(await self.answer(request)))
                await writer.drain()
        except ProtocolError as exc:
            log.warning("policy client %s: %s; disconnecting", peer, exc)
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except Exception:
            log.exception("policy client %s: internal error; disconnecting", peer)
        finally:
            writer.close()


async def serve_policy(service: PolicyService, listen: list[str]) -> list[asyncio.base_events.Server]:
    """Listen on ``HOST:PORT`` / ``[IPv6]:PORT`` / ``unix:/path`` addresses."""
    servers = []
    for item in listen:
        if item.startswith("unix:"):
            path = item[len("unix:") :]
            servers.append(await asyncio.start_unix_server(service.handle, path=path))
        else:
            host, port = parse_listen(item)
            servers.append(await asyncio.start_server(service.handle, host=host, port=port, reuse_address=True))
        log.info("policy service listening on %s", item)
    return servers
