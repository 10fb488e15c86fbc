"""Many independent questions at once, on callbacks: the transport of bulk work (the audit).

`DnsClient` gives every question a coroutine and a future, which is right for
a mail session that awaits a handful of lookups.  An audit asks two questions
for each of tens of thousands of addresses, and there that machinery was most
of its CPU (BENCHMARKS.md).  `BulkClient.ask` takes a callback instead: the
reply (or the `Failure`) is handed to it from the datagram transport's
`datagram_received`, which the loop calls for every datagram waiting on a
socket in one wake-up.  (Transports, not `add_reader` on raw sockets: uvloop
stops a reader for good when its socket reports an ICMP error, and every later
reply on that socket would go unread.)

It asks as `DnsClient` does, with the same outcomes:

- replies are matched by ID, question and source (a connected socket); garbage,
  queries and late duplicates are dropped;
- at most `max_inflight` questions are on the wire, the rest wait in order;
  the queries of one turn of the event loop go out together at its end (one
  wake-up of the nameserver for many queries, not one each: a fifth less CPU
  per audit check here, BENCHMARKS.md);
- each try waits `timeout` seconds, growing by half each retry, with ±10%
  jitter; tries rotate over the nameservers from a random one; an ICMP error or
  a malformed reply counts as that try's failure;
- NOERROR and NXDOMAIN are answers; SERVFAIL, REFUSED and other rcodes move on
  to the next nameserver when there is one, else they are the outcome;
- a truncated reply is asked again over TCP (`transport.ask_tcp`);
- a question may carry a deadline (loop time) past which no try starts.

`BulkResolver.lookup` follows CNAMEs with the same `Chase` as `Resolver`
(no cache and no joining of equal questions: an audit asks each name once).
"""

from __future__ import annotations

import asyncio
import collections
import functools
from collections.abc import Callable

from rdnsgate.lookups.lookup import Chase
from rdnsgate.lookups.transport import (
    SWEEP_INTERVAL,
    ClientStats,
    Failure,
    Nameserver,
    _ids,
    _jitter,
    ask_tcp,
    rcode_failure,
    try_wait,
    udp_transport,
)
from rdnsgate.lookups.wire import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    TYPES,
    Reply,
    WireError,
    decode_reply,
    decodes_unchanged,
    encode_query,
    encode_question,
)
from rdnsgate.model import Lookup, Status

Outcome = Reply | Failure
Done = Callable[[Outcome], None]
# Offered a matched reply datagram and where its answer section begins, before it is decoded: True when it took
# the reply (`done` is then never called), False to have it decoded and handed to `done` as usual.
Quick = Callable[[bytes, int], bool]
_NO_REPLY = Failure(Status.TIMEOUT, "no reply")  # a question's outcome until a try says otherwise


class _Ask:
    """One question across its tries."""

    __slots__ = (
        "asked",
        "attempt",
        "deadline",
        "done",
        "expires",
        "last",
        "qid",
        "question",
        "quick",
        "server",
        "start",
        "wait",
    )

    def __init__(
        self, question: bytes, asked: str | None, done: Done, deadline: float | None, start: int, quick: Quick | None
    ) -> None:
        self.question = question
        self.quick = quick if asked is not None else None  # the owner test of `only_record` needs the name as asked
        self.asked = asked  # the name, when decoding the question would give it back as it is
        self.done = done
        self.deadline = deadline
        self.attempt = 0
        self.start = start
        self.qid = 0
        self.expires = 0.0
        self.server: Nameserver | None = None
        self.wait = 0.0
        self.last = _NO_REPLY


class _Socket(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver (the loop's datagram transport) and the questions on it.

    The transport reads every datagram waiting in one wake-up and hands each to `datagram_received`
    (here the client's `_received` itself);
    an ICMP error (nobody listening) comes to `error_received` and fails every question on the socket.
    """

    def __init__(self, client: BulkClient, server: Nameserver) -> None:
        self.client = client
        self.server = server
        self.pending: dict[int, _Ask] = {}  # by query ID
        self.transport: asyncio.DatagramTransport | None = None
        # Every reply goes straight to the client: one Python call per datagram, not two.
        self.datagram_received = functools.partial(client._received, self)  # type: ignore[method-assign]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = udp_transport(transport)

    def error_received(self, exc: Exception) -> None:
        self.client._unreachable(self, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.client._unreachable(self, exc or ConnectionError("socket closed"))


class BulkClient:
    """Asks questions of a list of nameservers for callbacks; see the module docstring."""

    def __init__(
        self,
        nameservers: list[Nameserver],
        *,
        timeout: float = 2.0,
        tries: int = 3,
        max_inflight: int = 100,
        sockets_per_server: int = 4,
        udp_size: int = 1232,
    ) -> None:
        if not nameservers:
            raise ValueError("at least one nameserver is needed")
        self.nameservers = list(nameservers)
        self.timeout = timeout
        self.tries = max(1, tries)
        self.max_inflight = max(1, max_inflight)
        self.sockets_per_server = max(1, sockets_per_server)
        self.udp_size = udp_size
        self.stats = ClientStats()
        self.inflight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sockets: dict[Nameserver, list[_Socket]] = {}
        self._turn = 0
        self._waiting: collections.deque[_Ask] = collections.deque()
        self._sweeper: asyncio.TimerHandle | None = None
        self._tcp: set[asyncio.Task[None]] = set()
        self._tasks: set[asyncio.Task[None]] = set()  # opening sockets
        self._parked: dict[Nameserver, list[_Ask]] = {}  # tries waiting for their server's sockets
        self._closed = False
        self._outbox: list[tuple[asyncio.DatagramTransport, bytes]] = []

    # -- asking ------------------------------------------------------------------------

    def ask(
        self,
        qname: str,
        qtype: int,
        done: Done,
        deadline: float | None = None,
        quick: Quick | None = None,
        question: bytes | None = None,
    ) -> None:
        """Ask `qname`/`qtype`; `done` is called once, later, with the reply or the failure, unless `quick`
        takes the reply first (offered NOERROR replies only, and only for a name that `decodes_unchanged`).
        `question`: ``encode_question(qname, qtype)`` when the caller made it already, for a name that
        `decodes_unchanged` (a reverse name: `reverse_question_v4`)."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        if question is not None:
            asked: str | None = qname
        else:
            try:
                question = encode_question(qname, qtype)
            except WireError as exc:
                self._loop.call_soon(done, Failure(Status.ERROR, str(exc)))
                return
            asked = qname if decodes_unchanged(qname) else None
        count = len(self.nameservers)
        self._try(_Ask(question, asked, done, deadline, _jitter.randrange(count) if count > 1 else 0, quick))

    def _try(self, ask: _Ask) -> None:
        """Start the next try of `ask`, or end it with its last failure."""
        loop = self._loop
        assert loop is not None
        if ask.attempt >= self.tries:
            ask.done(ask.last)
            return
        server = self.nameservers[(ask.start + ask.attempt) % len(self.nameservers)]
        wait = try_wait(self.timeout, ask.attempt)
        if ask.deadline is not None:
            wait = min(wait, ask.deadline - loop.time())
            if wait <= 0:
                failure = Failure(ask.last.status, ask.last.detail + "; the check's deadline passed")
                if ask.attempt == 0:  # still inside ask(): `done` is never called from there
                    loop.call_soon(ask.done, failure)
                else:
                    ask.done(failure)
                return
        ask.server, ask.wait = server, wait
        ask.attempt += 1
        if self.inflight >= self.max_inflight:
            self._waiting.append(ask)
            return
        self._send(ask)

    def _send(self, ask: _Ask) -> None:
        """Put `ask`'s try on the wire (it takes a place there now), once its server's sockets are open."""
        server = ask.server
        assert server is not None and self._loop is not None
        self.inflight += 1
        if self.inflight > self.stats.peak_inflight:
            self.stats.peak_inflight = self.inflight
        pool = self._sockets.get(server)
        if pool is None:
            parked = self._parked.get(server)
            if parked is None:
                parked = self._parked[server] = []
                task = self._loop.create_task(self._open(server))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            parked.append(ask)
            return
        self._turn += 1
        sock = pool[self._turn % len(pool)]
        transport = sock.transport
        if transport is None:  # closed
            self._finished(ask)
            ask.last = Failure(Status.TIMEOUT, f"socket to {server} closed")
            self._loop.call_soon(self._try, ask)
            return
        pending = sock.pending
        qid = _ids.next()
        while qid in pending:
            qid = _ids.next()
        ask.qid = qid
        ask.expires = self._loop.time() + ask.wait
        pending[qid] = ask
        if self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep)
        self.stats.sent_udp += 1
        outbox = self._outbox
        if not outbox:
            self._loop.call_soon(self._flush)
        outbox.append((transport, encode_query(qid, ask.question, self.udp_size)))

    def _flush(self) -> None:
        """Send the queries of this turn of the loop (`_send` queued them)."""
        outbox, self._outbox = self._outbox, []
        for transport, packet in outbox:
            if not transport.is_closing():
                transport.sendto(packet)

    async def _open(self, server: Nameserver) -> None:
        """Open `server`'s sockets, then send the tries parked meanwhile (or fail them: unreachable)."""
        assert self._loop is not None
        pool: list[_Socket] = []
        try:
            for _ in range(self.sockets_per_server):
                _, proto = await self._loop.create_datagram_endpoint(
                    lambda: _Socket(self, server), remote_addr=(server.host, server.port)
                )
                pool.append(proto)
        except OSError as exc:
            for item in pool:
                if item.transport is not None:
                    item.transport.close()
            parked = self._parked.pop(server, [])
            for ask in parked:
                self._finished(ask)
                ask.last = Failure(Status.TIMEOUT, f"cannot reach {server}: {exc.strerror or exc}")
            for ask in parked:
                self._try(ask)
            return
        self._sockets[server] = pool
        for ask in self._parked.pop(server, []):
            self.inflight -= 1  # _send takes the place again
            self._send(ask)

    def _finished(self, ask: _Ask) -> None:
        """`ask`'s try is over (answered, failed or timed out): free its place on the wire."""
        self.inflight -= 1
        if self._waiting and self.inflight < self.max_inflight:
            self._send(self._waiting.popleft())

    # -- replies -----------------------------------------------------------------------

    def _received(self, sock: _Socket, data: bytes, addr: object = None) -> None:
        """A datagram on `sock`: the reply to a question on the wire there, or dropped (RFC 5452)."""
        # Its ID, the QR bit, one question, and that question's bytes (up to case: most servers echo the
        # case asked, so the bytes are compared as they are first) as asked.
        ask = sock.pending.get((data[0] << 8) | data[1]) if len(data) >= 12 else None
        if ask is None or not data[2] & 0x80 or data[4:6] != b"\x00\x01":
            self.stats.dropped += 1
            return
        question = ask.question
        echoed = data[12 : 12 + len(question)]
        if echoed != question and echoed.lower() != question.lower():
            self.stats.dropped += 1
            return
        del sock.pending[ask.qid]
        self._finished(ask)
        if ask.quick is not None and not data[3] & 0x0F and ask.quick(data, 12 + len(ask.question)):
            self.stats.rcodes[RCODE_NOERROR] = self.stats.rcodes.get(RCODE_NOERROR, 0) + 1
            return
        try:
            reply = decode_reply(data, ask.asked)
        except WireError as exc:
            ask.last = Failure(Status.ERROR, f"malformed reply from {sock.server}: {exc}")
            self._try(ask)
            return
        self._replied(ask, reply)

    def _replied(self, ask: _Ask, reply: Reply) -> None:
        if reply.truncated:
            task = asyncio.ensure_future(self._over_tcp(ask))
            self._tcp.add(task)
            task.add_done_callback(self._tcp.discard)
            return
        rcode = reply.rcode
        self.stats.rcodes[rcode] = self.stats.rcodes.get(rcode, 0) + 1
        if rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
            ask.done(reply)
            return
        assert ask.server is not None
        ask.last = rcode_failure(rcode, ask.server)
        if len(self.nameservers) == 1:
            ask.done(ask.last)
        else:
            self._try(ask)

    async def _over_tcp(self, ask: _Ask) -> None:
        assert ask.server is not None
        outcome = await ask_tcp(ask.server, ask.question, ask.wait, self.stats)
        if isinstance(outcome, Reply) and not outcome.truncated:
            self._replied(ask, outcome)
        else:
            ask.last = outcome if isinstance(outcome, Failure) else Failure(Status.ERROR, "truncated TCP reply")
            self._try(ask)

    def _unreachable(self, sock: _Socket, exc: Exception) -> None:
        """An ICMP error on a connected socket: the nameserver is not there; every try on it failed."""
        if self._closed:
            return
        failure = Failure(Status.TIMEOUT, f"nameserver unreachable: {getattr(exc, 'strerror', None) or exc}")
        asks = list(sock.pending.values())
        sock.pending.clear()
        for ask in asks:
            self._finished(ask)
            ask.last = failure
        for ask in asks:
            self._try(ask)

    def _sweep(self) -> None:
        """Every try past its time is over: retried, or failed."""
        assert self._loop is not None
        now = self._loop.time()
        expired = []
        for pool in self._sockets.values():
            for sock in pool:
                late = [qid for qid, ask in sock.pending.items() if ask.expires <= now]
                for qid in late:
                    expired.append(sock.pending.pop(qid))
        for ask in expired:
            self.stats.timeouts += 1
            self._finished(ask)
            ask.last = Failure(Status.TIMEOUT, f"no reply from {ask.server} within {ask.wait:.1f}s")
        for ask in expired:
            self._try(ask)
        busy = self.inflight or self._waiting
        self._sweeper = self._loop.call_later(SWEEP_INTERVAL, self._sweep) if busy and not self._closed else None

    async def close(self) -> None:
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for task in list(self._tcp) + list(self._tasks):
            task.cancel()
        for pool in self._sockets.values():
            for sock in pool:
                if sock.transport is not None:
                    sock.transport.close()
        self._sockets.clear()


class BulkResolver:
    """`Lookup` values for callbacks: CNAMEs followed with `Chase`, as `Resolver` does (no cache)."""

    def __init__(self, client: BulkClient, *, max_cnames: int = 8, default_negative_ttl: int = 300) -> None:
        self.client = client
        self.max_cnames = max_cnames
        self.default_negative_ttl = default_negative_ttl

    def lookup(
        self,
        name: str,
        qtype: str,
        done: Callable[[Lookup], None],
        deadline: float | None = None,
        quick: Quick | None = None,
        question: bytes | None = None,
    ) -> None:
        """Resolve `name`/`qtype`; `done` is called once, later, with the `Lookup`, unless `quick` takes the
        first reply (`BulkClient.ask`, as is `question`: then `name` is in lower case without the root's dot)."""
        qname = name
        if question is None:
            qname = name.lower()
            if qname.endswith(".") and not qname.endswith("\\."):
                qname = qname[:-1]
        following = _Following(self, qname, qtype, done, deadline)
        self.client.ask(qname, TYPES[qtype], following.replied, deadline, quick, question)

    async def close(self) -> None:
        await self.client.close()


class _Following:
    """One lookup across its CNAME hops; its `Chase` is made at the first outcome it is handed (a reply that
    the caller's `quick` took needs none)."""

    __slots__ = ("_chase", "deadline", "done", "hops", "qname", "qtype", "resolver")

    def __init__(
        self, resolver: BulkResolver, qname: str, qtype: str, done: Callable[[Lookup], None], deadline: float | None
    ) -> None:
        self.resolver = resolver
        self.qname, self.qtype = qname, qtype
        self._chase: Chase | None = None
        self.done = done
        self.deadline = deadline
        self.hops = 0

    @property
    def chase(self) -> Chase:
        chase = self._chase
        if chase is None:
            resolver = self.resolver
            chase = self._chase = Chase(self.qname, self.qtype, resolver.max_cnames, resolver.default_negative_ttl)
        return chase

    def ask(self) -> None:
        chase = self.chase
        self.resolver.client.ask(chase.current, chase.code, self.replied, self.deadline)

    def replied(self, outcome: Outcome) -> None:
        chase = self.chase
        if isinstance(outcome, Failure):
            self.done(chase.failed(outcome.status, outcome.detail))
            return
        lookup = chase.step(outcome)
        if lookup is not None:
            self.done(lookup)
            return
        self.hops += 1
        if self.hops > self.resolver.max_cnames:
            self.done(chase.too_long())
            return
        self.ask()
