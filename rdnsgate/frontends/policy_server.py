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
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from rdnsgate.checks.names import parse_ip
from rdnsgate.config import Settings
from rdnsgate.frontends.exim_socket import EximService, serve_exim
from rdnsgate.frontends.listen import listen_protocol
from rdnsgate.model import DecisionRecord, IPAddress, Report, WhitelistEntry
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import Action, Stage
from rdnsgate.policy.session import Policy, RecentReports, Session, WhitelistHolder, shares_fresh
from rdnsgate.runtime import Commit, Deadline, Runtime

if TYPE_CHECKING:
    from rdnsgate.privileges import Listeners

log = logging.getLogger(__name__)

MAX_LINE = 512
MAX_ATTRIBUTES = 100
MAX_REQUEST = 16 * 1024
STAGE_OF_STATE = {"EHLO": Stage.HELO, "HELO": Stage.HELO, "MAIL": Stage.MAIL, "RCPT": Stage.RCPT}


class ProtocolError(ValueError):
    """The peer broke the protocol: log a warning and disconnect (Exim's face: a ``defer`` answer)."""


_NAME = re.compile(rb"[A-Za-z0-9_]+")


def _pair(line: bytes) -> tuple[str, str] | None:
    """(name, value) of a ``name=value`` line whose name is ASCII letters, digits and ``_``; else None."""
    name, equals, value = line.partition(b"=")
    if not equals or _NAME.fullmatch(name) is None:
        return None
    return name.decode("ascii"), value.decode("utf-8", "replace")


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
                if self._buffer:
                    self._check_partial()
                return
            block, self._buffer = self._buffer[:end], self._buffer[end + 2 :]
            if len(block) + 2 > MAX_REQUEST:
                raise ProtocolError(f"request larger than {MAX_REQUEST} bytes")
            yield _attributes(block.split(b"\n"))

    def _check_partial(self) -> None:
        """An unfinished request must already be within the limits."""
        buffer = self._buffer
        if not buffer:
            return
        if len(buffer) > MAX_REQUEST:
            raise ProtocolError(f"request larger than {MAX_REQUEST} bytes")
        if max(map(len, buffer.split(b"\n"))) > MAX_LINE:
            raise ProtocolError(f"line longer than {MAX_LINE} bytes")
        if buffer.count(b"\n") > MAX_ATTRIBUTES:
            raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes")


class _Lines(dict[bytes, tuple[str, str]]):
    """Lines seen before -> (name, value): most lines of a Postfix request (the client, HELO, sender, TLS
    and server attributes) come again and again, so a request costs a dict lookup per line in C, and a line
    is checked (its length, the ``name=value`` form) and decoded only the first time it is seen (the instance,
    queue ID, recipient and size are new ones)."""

    KEPT = 4096  # lines of at most MAX_LINE bytes: a few MiB at most

    def __missing__(self, line: bytes) -> tuple[str, str]:
        pair = _pair(line) if len(line) <= MAX_LINE else None
        if pair is None:
            raise _Malformed
        if len(self) >= self.KEPT:
            self.clear()
        self[line] = pair
        return pair


class _Malformed(Exception):
    pass


_lines = _Lines()


def attributes(block: bytes) -> dict[str, str]:
    """The ``name=value`` lines of a request, values decoded as UTF-8 (bad bytes replaced); ProtocolError
    for more than `MAX_ATTRIBUTES` lines, a line longer than `MAX_LINE` bytes, or else the first line that is
    not ``name=value`` with a name of ASCII letters, digits and ``_`` (the error in that order)."""
    return _attributes(block.split(b"\n"))


def _attributes(lines: list[bytes]) -> dict[str, str]:
    if len(lines) > MAX_ATTRIBUTES:
        raise ProtocolError(f"more than {MAX_ATTRIBUTES} attributes")
    try:
        return dict(map(_lines.__getitem__, lines))
    except _Malformed:
        pass
    if max(map(len, lines)) > MAX_LINE:
        raise ProtocolError(f"line longer than {MAX_LINE} bytes")
    bad = next((line for line in lines if _pair(line) is None), b"")
    raise ProtocolError(f"malformed line {bad[:60]!r}")


def reply(action: str) -> bytes:
    return f"action={action}\n\n".encode("utf-8", "replace")


@dataclass(slots=True)
class Shared:
    """A Postfix session answered so far from a recent report shared with earlier ones, without a `Session`:
    what one would hold (`PolicyService._shared_answer`; `Session.adopt` makes the Session from it)."""

    policy: Policy  # the service's, when the session began (a reload does not change a session half-way)
    engine: Engine
    ip: IPAddress
    text: str  # str(ip)
    helo: str
    sender: str  # the reverse path as the session gives it: ``<sender>``
    report: Report
    decided: tuple[int, Decision] | None = None  # (id of the whitelist, the decision made on it)
    recorded: bool = False  # the accepted message's record is written


@dataclass(slots=True)
class Instance:
    """One Postfix session (``instance``): its policy session, or what stands for one while the session
    shares a recent report (`shared`), and the message that got its header."""

    session: Session | None
    client: str
    tagged: str | None = None  # the sender of the message that was tagged
    shared: Shared | None = None

    def header_once(self, decision: Decision, sender: str | None) -> tuple[str, str] | None:
        """The header `decision` adds (monitor), once per message: the first time for this `sender`."""
        if decision.action is not Action.TAG or self.tagged == sender:
            return None
        self.tagged = sender
        return decision.headers[0]


class PolicyService:
    def __init__(
        self,
        engine: Engine,
        policy: Policy,
        decisions: DecisionLog,
        *,
        max_instances: int = 10_000,
        whitelist: WhitelistHolder | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.decisions = decisions
        self.whitelist: list[WhitelistEntry] = []  # used when no holder is given
        self.holder: WhitelistHolder = whitelist or self
        self.instances: OrderedDict[str, Instance] = OrderedDict()
        self.max_instances = max_instances
        self.recent = RecentReports(max_instances)
        self.requests = 0
        self.skip_authenticated = True  # policy.skip_authenticated; trusted networks are the Policy's
        self._skipped: OrderedDict[str, None] = OrderedDict()  # Postfix sessions logged as skipped already
        self._clients: dict[str, tuple[IPAddress, str]] = {}  # client_address -> the address and its text

    def skip_reason(self, request: dict[str, str]) -> str | None:
        """Why this client is not checked at all (submission, a trusted network), or None."""
        user = request.get("sasl_username", "")
        if user and self.skip_authenticated:
            return f"authenticated as {user[:100]}"
        if self.policy.trusted:
            try:
                return self.policy.trusted_reason(parse_ip(request.get("client_address", "")))
            except ValueError:
                return None
        return None

    def _skipped_once(self, request: dict[str, str], why: str) -> None:
        """One record per Postfix session that was not checked (action `skipped`), at its first RCPT."""
        name = f"{request.get('instance', '')}/{request.get('client_address', '')}"
        if name in self._skipped:
            return
        self._skipped[name] = None
        while len(self._skipped) > self.max_instances:
            self._skipped.popitem(last=False)
        self.decisions.record(
            DecisionRecord(
                at=datetime.now(UTC),
                session=request.get("instance", "")[:64],
                client_ip=request.get("client_address", "")[:45],
                ptr=None,
                helo=request.get("helo_name") or None,
                sender=request.get("sender"),
                recipients=(request["recipient"],) if request.get("recipient") else (),
                profile=self.policy.profile.name,
                action="skipped",
                stage=None,
                reply=None,
                checks={},
                whitelisted=why,
                node=self.policy.node,
            )
        )

    def _instance(self, request: dict[str, str]) -> tuple[Instance, Session]:
        name = request.get("instance", "")
        client = request.get("client_address", "")
        found = self.instances.get(name)
        if found is not None and found.client == client:
            self.instances.move_to_end(name)
            if found.session is None:
                found.session = self._session_of(name, found.shared)
                found.shared = None
            return found, found.session
        known = self._clients.get(client)
        if known is None:
            try:
                ip = parse_ip(client)
            except ValueError:
                raise ProtocolError(f"client_address {client[:60]!r} is no IP address") from None
            if len(self._clients) >= self.max_instances:
                self._clients.clear()
            known = self._clients[client] = (ip, str(ip))
        if found is not None and found.session is not None:
            found.session.close()
        session = Session(self.policy, self.engine, self.holder, self.decisions, id=name, recent=self.recent)
        session.begin(known[0], look_up=False, text=known[1])  # a recent report may make the lookup needless
        self._keep(name, found := Instance(session, client))
        return found, session

    def _keep(self, name: str, instance: Instance) -> None:
        self.instances[name] = instance
        while len(self.instances) > self.max_instances:
            _name, old = self.instances.popitem(last=False)
            if old.session is not None:
                old.session.close()

    def _session_of(self, name: str, shared: Shared | None) -> Session:
        """The Session a Postfix session answered from a shared report would have been all along."""
        assert shared is not None
        session = Session(shared.policy, shared.engine, self.holder, self.decisions, id=name, recent=self.recent)
        session.begin(shared.ip, look_up=False, text=shared.text)
        session.adopt(shared.report, shared.helo, shared.sender, recorded=shared.recorded, decided=shared.decided)
        return session

    def _shared_answer(
        self, request: dict[str, str], state: str
    ) -> tuple[Decision, bool, tuple[str, str] | None] | None:
        """`judge`'s answer, made without a Session, for the common request: a new Postfix session of a client
        seen lately with the same HELO and sender (their report shared, `shares_fresh`), or a later request of
        such a session naming them again, that is not refused.  None for any other (`judge` answers it).

        It decides, records and tags as `Session` would (the property test of the two holds them together);
        the first request that needs more makes the Session (`_session_of`).
        """
        helo = request.get("helo_name") or None
        sender = request.get("sender")
        if helo is None or sender is None:
            return None
        sender = f"<{sender}>"
        name = request.get("instance", "")
        client = request.get("client_address", "")
        found = self.instances.get(name)
        if found is None:
            known = self._clients.get(client)
            if known is None:
                return None
            report = self.recent.get((known[1], helo, sender))
            if report is None or not shares_fresh(report, helo):
                return None
            shared = Shared(self.policy, self.engine, known[0], known[1], helo, sender, report)
        else:
            if found.shared is None or found.client != client:
                return None
            shared = found.shared
            if shared.helo != helo or shared.sender != sender:
                return None
        whitelist = self.holder.whitelist
        decided = shared.decided
        if decided is None or decided[0] != id(whitelist):
            decided = (id(whitelist), shared.policy.decide_listed(shared.report, whitelist))
        decision = decided[1]
        if decision.refused:
            return None
        shared.decided = decided
        if found is None:
            self._keep(name, found := Instance(None, client, shared=shared))
        else:
            self.instances.move_to_end(name)
        if state in ("RCPT", "DATA", "END-OF-MESSAGE"):
            if not shared.recorded:
                shared.recorded = True
                self.decisions.record_decision(
                    shared.report,
                    decision,
                    session=name,
                    recipients=[request["recipient"]] if request.get("recipient") else [],
                    node=shared.policy.node,
                )
            return decision, False, found.header_once(decision, sender)
        return decision, False, None

    async def judge(self, request: dict[str, str]) -> tuple[Decision | None, bool, tuple[str, str] | None]:
        """One request's decision, whether its refusal is due now, and the header to add now (if any).

        The faces word it: Postfix's actions here, Exim's answers in exim_socket.py.
        """
        self.requests += 1
        state = request.get("protocol_state", "RCPT").upper()
        if state in ("CONNECT", "UNKNOWN") or "client_address" not in request:
            return None, False, None
        why = self.skip_reason(request)
        if why is not None:
            if state in ("RCPT", "DATA", "END-OF-MESSAGE"):
                self._skipped_once(request, why)
            return None, False, None
        fast = self._shared_answer(request, state)
        if fast is not None:
            return fast
        instance, session = self._instance(request)
        sender = f"<{request['sender']}>" if "sender" in request else None
        await session.evaluate(request.get("helo_name") or None, sender)
        report, decision, refuse = await session.answer(STAGE_OF_STATE.get(state, Stage.RCPT))
        recipient = request.get("recipient", "")
        recipients = [recipient] if recipient else []
        if refuse:
            session.record(report, decision, recipients)
            return decision, True, None
        if state in ("RCPT", "DATA", "END-OF-MESSAGE"):
            session.record(report, decision, recipients)
            return decision, False, instance.header_once(decision, session.sender_given)
        return decision, False, None

    async def answer(self, request: dict[str, str]) -> str:
        """The Postfix action for one request (without "action=")."""
        decision, refuse, header = await self.judge(request)
        if refuse:
            assert decision is not None and decision.reply is not None
            if decision.action is Action.TEMPFAIL:
                return f"DEFER_IF_PERMIT {decision.reply.enhanced} {decision.reply.text}"
            return str(decision.reply)
        if header is not None:
            return f"PREPEND {header[0]}: {header[1]}"
        return "DUNNO"


MAX_WAITING = 100  # requests read ahead of the one being answered, before reading pauses


class _Resumed:
    """The rest of a coroutine stepped by hand until it stopped at `awaited` (what it waits for): awaiting
    this passes what it yields up to the task and what the task sends down, as ``yield from`` would."""

    def __init__(self, coroutine: Coroutine[Any, Any, str], awaited: Any) -> None:
        self.coroutine, self.awaited = coroutine, awaited

    def __await__(self) -> Generator[Any, Any, str]:
        coroutine, value = self.coroutine, self.awaited
        while True:
            try:
                sent = yield value
            except GeneratorExit:
                coroutine.close()
                raise
            except BaseException as exc:  # a cancellation, passed on
                try:
                    value = coroutine.throw(exc)
                except StopIteration as done:
                    return cast(str, done.value)
            else:
                try:
                    value = coroutine.send(sent)
                except StopIteration as done:
                    return cast(str, done.value)


class PolicyConnection(asyncio.Protocol):
    """One policy client: requests answered in order, each in the callback that read it when it needs no
    lookup (a known client: most of them), else by a task that then answers the requests read meanwhile.

    Reading pauses while the client does not read its answers or sends far ahead of them, so memory
    stays bounded.
    """

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self.parser = RequestParser()
        self.transport: asyncio.Transport | None = None
        self.peer: object = "unix socket"
        self.waiting: deque[dict[str, str]] = deque()
        self.task: asyncio.Task[None] | None = None  # answering a request that waits for DNS, then `waiting`
        self.writing_paused = False  # the client does not read its answers

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.peer = transport.get_extra_info("peername") or "unix socket"

    def data_received(self, data: bytes) -> None:
        try:
            for request in self.parser.feed(data):
                if self.task is not None:
                    self.waiting.append(request)
                    if len(self.waiting) >= MAX_WAITING and self.transport is not None:
                        self.transport.pause_reading()
                else:
                    self._answer(request)
        except ProtocolError as exc:
            self._trouble(exc)
        except Exception:
            log.exception("policy client %s: internal error; disconnecting", self.peer)
            self._close()

    def _answer(self, request: dict[str, str]) -> None:
        """Answer at once when the answer needs no waiting; else start the task that waits for it."""
        coroutine = self.service.answer(request)
        try:
            awaited = coroutine.send(None)
        except StopIteration as done:
            self._write(done.value)
            return
        self.task = asyncio.get_running_loop().create_task(self._later(_Resumed(coroutine, awaited)))

    async def _later(self, first: _Resumed) -> None:
        try:
            self._write(await first)
            while self.waiting:
                self._resume_reading()
                self._write(await self.service.answer(self.waiting.popleft()))
        except ProtocolError as exc:
            self._trouble(exc)
        except Exception:
            log.exception("policy client %s: internal error; disconnecting", self.peer)
            self._close()
        finally:
            self.task = None

    def _write(self, action: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply(action))

    def _trouble(self, exc: ProtocolError) -> None:
        log.warning("policy client %s: %s; disconnecting", self.peer, exc)
        self._close()

    def _close(self) -> None:
        self.waiting.clear()
        if self.transport is not None:
            self.transport.close()

    def _resume_reading(self) -> None:
        if self.transport is not None and not self.writing_paused and len(self.waiting) < MAX_WAITING:
            self.transport.resume_reading()

    def pause_writing(self) -> None:  # the client does not read its answers: read no more requests
        self.writing_paused = True
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.waiting.clear()
        if self.task is not None:
            self.task.cancel()
        self.transport = None


async def serve_policy(
    service: PolicyService, listen: list[str], listeners: Listeners | None = None
) -> list[asyncio.base_events.Server]:
    return await listen_protocol(lambda: PolicyConnection(service), listen, listeners, "policy service")


class PolicyRunner:
    """The policy service as a service of the runtime."""

    name = "policy"

    def __init__(self, runtime: Runtime) -> None:
        settings = runtime.settings.policy
        self.runtime = runtime
        self.service = PolicyService(
            runtime.engine,
            Policy.from_settings(settings, "policy", runtime.hostname, runtime.node, runtime.signer),
            runtime.decisions,
            max_instances=settings.max_instances,
            whitelist=runtime,
        )
        self.service.skip_authenticated = settings.skip_authenticated
        self.servers: list[asyncio.base_events.Server] = []
        self._untrack: Callable[[], None] | None = None

    async def start(self) -> None:
        settings = self.runtime.settings.policy
        await self.runtime.load_whitelist()
        self.runtime.refresh_whitelist(settings.whitelist_refresh)
        self.runtime.guard_resolver()
        self._untrack = METRICS.track(policy_services=self.service)
        self.servers = await serve_policy(self.service, list(settings.listen), self.runtime.listeners)
        self.servers += await serve_exim(EximService(self.service), settings.exim_listen, self.runtime.listeners)
        log.info("rdnsgate policy service ready: profile %s", self.service.policy.profile.name)

    def prepare_reload(self, settings: Settings) -> Commit:
        """Postfix sessions that begin after the commit get the new profile; those in progress keep theirs."""
        new = settings.policy
        policy = Policy.from_settings(new, "policy", self.runtime.hostname, self.runtime.node, self.runtime.signer)

        async def commit() -> None:
            service = self.service
            service.policy, service.engine, service.max_instances = policy, self.runtime.engine, new.max_instances
            service.skip_authenticated = new.skip_authenticated
            self.runtime.refresh_whitelist(new.whitelist_refresh)

        return commit

    async def finished(self) -> None:
        await asyncio.Event().wait()  # the service never ends on its own

    async def drain(self, deadline: Deadline) -> None:
        for server in self.servers:
            server.close()

    async def stop(self) -> None:
        if self._untrack is not None:
            self._untrack()
