"""Sending DNS queries: UDP with retries, TCP when the reply is truncated.

`DnsClient.query` sends one question to the configured nameservers and
returns the decoded `Reply`, or a `Failure` saying why there is none.  It
never raises for a DNS outcome.

- Replies are matched to their query by ID, question name and type, and
  source; anything else (wrong ID, garbage, a late duplicate) is dropped.
- At most `max_inflight` queries are on the wire at once (a burst much above
  ~100 overflows a loopback UDP socket buffer on a small machine).
- Each try waits `timeout` seconds, growing by half each retry, with ±10%
  jitter; tries rotate over the nameservers.  SERVFAIL and REFUSED move on to
  the next nameserver when there is one.
- A truncated UDP reply is asked again over TCP (RFC 7766).
"""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import logging
import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import cast

from rdnsgate.lookups.health import ResolverHealth
from rdnsgate.lookups.wire import (
    RCODE_NOERROR,
    RCODE_NXDOMAIN,
    RCODE_REFUSED,
    RCODE_SERVFAIL,
    Reply,
    WireError,
    decode_reply,
    encode_query,
    encode_question,
    question_key,
)
from rdnsgate.model import Status

log = logging.getLogger(__name__)

_jitter = random.Random()
_random = _jitter.random
SWEEP_INTERVAL = 0.05  # seconds: how late a UDP timeout may fire


def try_wait(timeout: float, attempt: int) -> float:
    """How long try `attempt` (from 0) waits for its reply: `timeout`, half as much again at each retry, with
    ±10% jitter so that the retries of questions asked together do not go out together (one C call)."""
    return timeout * (1 + 0.5 * attempt) * (0.9 + 0.2 * _random())


class _QueryIds:
    """Unpredictable 16-bit query IDs (RFC 5452) from a buffer of os.urandom bytes."""

    def __init__(self) -> None:
        self._buffer = b""
        self._at = 0

    def next(self) -> int:
        if self._at >= len(self._buffer):
            self._buffer, self._at = os.urandom(4096), 0
        value = (self._buffer[self._at] << 8) | self._buffer[self._at + 1]
        self._at += 2
        return value


_ids = _QueryIds()


@dataclass(frozen=True, slots=True)
class Nameserver:
    host: str
    port: int = 53

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Failure:
    status: Status
    detail: str


def rcode_failure(rcode: int, server: Nameserver) -> Failure:
    """What a reply with an rcode other than NOERROR or NXDOMAIN says: SERVFAIL, REFUSED or an error."""
    status = {RCODE_SERVFAIL: Status.SERVFAIL, RCODE_REFUSED: Status.REFUSED}.get(rcode, Status.ERROR)
    detail = f"{status.name} from {server}" if status is not Status.ERROR else f"rcode {rcode} from {server}"
    return Failure(status, detail)


LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class ClientStats:
    sent_udp: int = 0
    sent_tcp: int = 0
    timeouts: int = 0
    dropped: int = 0  # datagrams that matched no query, or were not DNS
    peak_inflight: int = 0
    rcodes: dict[int, int] = field(default_factory=dict)
    latency_sum: float = 0.0  # seconds over all questions answered or given up; counts per bucket below
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))

    def observe(self, seconds: float) -> None:
        self.latency_sum += seconds
        self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1


def udp_transport(transport: asyncio.BaseTransport) -> asyncio.DatagramTransport:
    """A new UDP transport, its receive buffer widened (a burst of replies must not overflow it)."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):  # the kernel caps it quietly
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
    return cast(asyncio.DatagramTransport, transport)  # uvloop's is no subclass


class _UdpSocket(asyncio.DatagramProtocol):
    """One connected UDP socket to one nameserver, with its pending queries."""

    def __init__(self, stats: ClientStats) -> None:
        self.stats = stats
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[tuple[int, bytes], asyncio.Future[bytes | Failure | None]] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = udp_transport(transport)

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            key = question_key(data)
        except WireError:
            self.stats.dropped += 1
            return
        if not data[2] & 0x80:  # a query, not a reply
            self.stats.dropped += 1
            return
        future = self.pending.pop(key, None)
        if future is None or future.done():
            self.stats.dropped += 1
            return
        future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        # A connected UDP socket reports ICMP errors (port unreachable): the
        # nameserver is not there.  Every query waiting on it fails at once.
        failure = Failure(Status.TIMEOUT, f"nameserver unreachable: {getattr(exc, 'strerror', None) or exc}")
        for future in self.pending.values():
            if not future.done():
                future.set_result(failure)
        self.pending.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.error_received(exc or ConnectionError("socket closed"))
        self.transport = None


class DnsClient:
    """Asks questions of a list of nameservers; see the module docstring."""

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
        self.udp_size = udp_size
        self.sockets_per_server = max(1, sockets_per_server)
        self.stats = ClientStats()
        self.health: ResolverHealth | None = None  # told every try's outcome (lookups/health.py)
        self.max_inflight = max_inflight
        self.inflight = 0
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._sockets: dict[Nameserver, list[_UdpSocket]] = {}
        self._next = 0
        self._opening: asyncio.Lock | None = None
        # One sweeper expires overdue UDP queries, instead of a timer per query.
        self._deadlines: dict[asyncio.Future[bytes | Failure | None], float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def _ensure_sweeper(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._sweeper is None:
            self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for future, deadline in list(self._deadlines.items()):
            if deadline <= now:
                del self._deadlines[future]
                if not future.done():
                    future.set_result(None)
        self._sweeper = loop.call_later(SWEEP_INTERVAL, self._sweep, loop) if self._deadlines else None

    async def _open_sockets(self, server: Nameserver) -> list[_UdpSocket]:
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            pool = [item for item in self._sockets.get(server, []) if item.transport is not None]
            loop = asyncio.get_running_loop()
            while len(pool) < self.sockets_per_server:
                _, proto = await loop.create_datagram_endpoint(
                    lambda: _UdpSocket(self.stats), remote_addr=(server.host, server.port)
                )
                pool.append(proto)
            self._sockets[server] = pool
        return pool

    async def _slot(self) -> None:
        """Wait until fewer than `max_inflight` queries are on the wire, then take a place."""
        while self.inflight >= self.max_inflight:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter in self._waiting:
                    self._waiting.remove(waiter)
                elif self._waiting and self.inflight < self.max_inflight:
                    self._release_one()
                raise
        self.inflight += 1

    def _release_one(self) -> None:
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _release(self) -> None:
        self.inflight -= 1
        if self._waiting:
            self._release_one()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pool in self._sockets.values():
            for item in pool:
                if item.transport is not None:
                    item.transport.close()
        self._sockets.clear()

    async def query(self, qname: str, qtype: int, deadline: float | None = None) -> Reply | Failure:
        """Ask `qname`/`qtype`; stop trying at loop time `deadline` if given."""
        loop = asyncio.get_running_loop()
        began = time.perf_counter()  # not loop.time(): uvloop's clock moves in whole milliseconds
        try:
            last = Failure(Status.TIMEOUT, "no reply")
            count = len(self.nameservers)
            start = _jitter.randrange(count) if count > 1 else 0
            try:
                question = encode_question(qname, qtype)
            except WireError as exc:
                return Failure(Status.ERROR, str(exc))
            for attempt in range(self.tries):
                server = self.nameservers[(start + attempt) % count]
                wait = try_wait(self.timeout, attempt)
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        return Failure(last.status, last.detail + "; the check's deadline passed")
                sent = loop.time()
                outcome = await self._udp(server, question, wait)
                if isinstance(outcome, Reply) and outcome.truncated:
                    outcome = await self._tcp(server, question, wait)
                if self.health is not None:
                    bad = not isinstance(outcome, Reply) or outcome.rcode not in (RCODE_NOERROR, RCODE_NXDOMAIN)
                    now = loop.time()
                    self.health.observe(str(server), bad, now - sent, now)
                if isinstance(outcome, Reply):
                    rcode = outcome.rcode
                    self.stats.rcodes[rcode] = self.stats.rcodes.get(rcode, 0) + 1
                    if rcode in (RCODE_NOERROR, RCODE_NXDOMAIN):
                        return outcome
                    last = rcode_failure(rcode, server)
                    if count == 1:
                        return last
                    continue
                last = outcome
            return last
        finally:
            self.stats.observe(time.perf_counter() - began)

    async def _udp(self, server: Nameserver, question: bytes, wait: float) -> Reply | Failure:
        pool = self._sockets.get(server)
        if pool is None or len(pool) < self.sockets_per_server:
            try:
                pool = await self._open_sockets(server)
            except OSError as exc:
                return Failure(Status.TIMEOUT, f"cannot reach {server}: {exc.strerror or exc}")
        self._next += 1
        sock = pool[self._next % len(pool)]
        transport = sock.transport
        if transport is None:
            pool.remove(sock)  # closed after an error: the next query opens a new one
            return Failure(Status.TIMEOUT, f"socket to {server} closed")
        if self.inflight >= self.max_inflight:
            await self._slot()
        else:
            self.inflight += 1
        if self.inflight > self.stats.peak_inflight:
            self.stats.peak_inflight = self.inflight
        try:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[bytes | Failure | None] = loop.create_future()
            lowered = question.lower()
            key = (_ids.next(), lowered)
            while key in sock.pending:
                key = (_ids.next(), lowered)
            sock.pending[key] = future
            self._deadlines[future] = loop.time() + wait
            self._ensure_sweeper(loop)
            transport.sendto(encode_query(key[0], question, self.udp_size))
            self.stats.sent_udp += 1
            try:
                data = await future
            finally:
                self._deadlines.pop(future, None)
                if sock.pending.get(key) is future:
                    del sock.pending[key]
        finally:
            self._release()
        if data is None:
            self.stats.timeouts += 1
            return Failure(Status.TIMEOUT, f"no reply from {server} within {wait:.1f}s")
        if isinstance(data, Failure):
            return data
        try:
            return decode_reply(data)
        except WireError as exc:
            return Failure(Status.ERROR, f"malformed reply from {server}: {exc}")

    async def _tcp(self, server: Nameserver, question: bytes, wait: float) -> Reply | Failure:
        return await ask_tcp(server, question, wait, self.stats)


async def ask_tcp(server: Nameserver, question: bytes, wait: float, stats: ClientStats) -> Reply | Failure:
    """Ask an encoded question over TCP (RFC 7766: after a truncated UDP reply), within `wait` seconds."""
    qid = _ids.next()
    packet = encode_query(qid, question, 0)
    expected = (qid, question.lower())
    stats.sent_tcp += 1
    writer = None
    try:
        async with asyncio.timeout(wait):
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(len(packet).to_bytes(2, "big") + packet)
            await writer.drain()
            while True:
                size = int.from_bytes(await reader.readexactly(2), "big")
                data = await reader.readexactly(size)
                try:
                    if question_key(data) == expected and data[2] & 0x80:
                        break
                except WireError:
                    pass
                stats.dropped += 1
    except TimeoutError:
        stats.timeouts += 1
        return Failure(Status.TIMEOUT, f"no TCP reply from {server} within {wait:.1f}s")
    except (OSError, asyncio.IncompleteReadError) as exc:
        return Failure(Status.TIMEOUT, f"TCP to {server} failed: {exc}")
    finally:
        if writer is not None:
            writer.close()
    try:
        return decode_reply(data)
    except WireError as exc:
        return Failure(Status.ERROR, f"malformed TCP reply from {server}: {exc}")
