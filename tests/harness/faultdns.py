"""A small DNS responder that does what no real server does on command.

It listens on UDP and TCP on a loopback port.  A question with a fault rule
gets the fault; every other question is forwarded to the upstream server
(the knotd fixture) and its answer relayed, so one scenario can combine real
zone data with a fault at exactly one lookup.

Faults (`Fault`): no reply (timeout), SERVFAIL, REFUSED, a truncated UDP
answer (the full one over TCP), garbage bytes, a reply with the wrong query
ID (optionally followed by the right one), a CNAME loop, and an answer padded
with a huge TXT set.
"""

from __future__ import annotations

import os
import socket
import socketserver
import threading
from dataclasses import dataclass
from enum import StrEnum

import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from tests.harness.knot import free_port


class Fault(StrEnum):
    TIMEOUT = "timeout"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TRUNCATE = "truncate"  # UDP: TC bit, no records; TCP: the real answer
    GARBAGE = "garbage"
    WRONG_ID = "wrong-id"  # only a reply with the wrong ID: the client must time out
    WRONG_ID_THEN_RIGHT = "wrong-id-then-right"
    CNAME_LOOP = "cname-loop"  # name -> loop-b.<name> -> name
    HUGE_TXT = "huge-txt"  # the real answer plus ~20 KB of TXT in the additional section
    DROP_FIRST = "drop-first"  # no reply to the first query of this name and type, then the real answers
    NXDOMAIN = "nxdomain"  # "does not exist": a resolver that still holds an old negative answer
    OTHER_CASE = "other-case"  # the real answer, its question (and records) named in upper case (RFC 4343)


@dataclass
class Counts:
    udp: int = 0
    tcp: int = 0


class FaultResponder:
    def __init__(self, upstream: tuple[str, int], address: str = "127.0.0.1", port: int = 0) -> None:
        self.upstream = upstream
        self.address = address
        self.rules: dict[tuple[str, str], Fault] = {}
        self.seen: list[tuple[str, str, str]] = []  # (transport, name, type)
        self.counts = Counts()
        self._dropped: set[tuple[str, str]] = set()
        self.hostile: Fault | str | None = None  # "nxdomain" or a Fault for every question: a broken resolver
        self._lock = threading.Lock()
        self._servers: list[socketserver.BaseServer] = []
        self._threads: list[threading.Thread] = []
        self.port = port

    # -- rules -----------------------------------------------------------------
    def add(self, name: str, rtype: str, fault: Fault) -> None:
        self.rules[(name.lower().rstrip("."), rtype.upper())] = fault

    def clear(self) -> None:
        self.hostile = None
        self.rules.clear()
        self.seen.clear()
        self._dropped.clear()

    def asked(self, name: str, rtype: str) -> int:
        """How often (name, type) was asked, over UDP and TCP."""
        name = name.lower().rstrip(".")
        return sum(1 for _, n, t in self.seen if n.lower() == name and t == rtype)

    def _fault_for(self, query: dns.message.Message) -> Fault | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rtype = dns.rdatatype.to_text(question.rdtype)
        return self.rules.get((name, rtype)) or self.rules.get((name, "*"))

    # -- answers -----------------------------------------------------------------
    def _forward(self, query: dns.message.Message, tcp: bool) -> dns.message.Message:
        host, port = self.upstream
        if tcp:
            return dns.query.tcp(query, host, port=port, timeout=5)
        return dns.query.udp(query, host, port=port, timeout=5, ignore_trailing=True)

    def answer(self, wire: bytes, tcp: bool) -> list[bytes]:
        """The datagrams (or TCP messages) to send back for one query."""
        try:
            query = dns.message.from_wire(wire)
        except Exception:
            return []
        question = query.question[0]
        with self._lock:
            self.seen.append(
                ("tcp" if tcp else "udp", question.name.to_text(True), dns.rdatatype.to_text(question.rdtype))
            )
        fault = self._fault_for(query)
        if self.hostile == "nxdomain" or fault is Fault.NXDOMAIN:  # a resolver that says it does not exist
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.NXDOMAIN)
            return [reply.to_wire()]
        if self.hostile is not None:
            fault = Fault(self.hostile)
        if fault is Fault.DROP_FIRST:
            key = (question.name.to_text(True).lower(), dns.rdatatype.to_text(question.rdtype))
            with self._lock:
                first = key not in self._dropped
                self._dropped.add(key)
            fault = Fault.TIMEOUT if first else None
        if fault is None:
            return [self._forward(query, tcp).to_wire()]
        if fault is Fault.TIMEOUT:
            return []
        if fault in (Fault.SERVFAIL, Fault.REFUSED):
            reply = dns.message.make_response(query)
            reply.set_rcode(dns.rcode.SERVFAIL if fault is Fault.SERVFAIL else dns.rcode.REFUSED)
            return [reply.to_wire()]
        if fault is Fault.GARBAGE:
            return [os.urandom(40), wire[:2] + os.urandom(30)]
        if fault is Fault.OTHER_CASE:
            real = self._forward(query, tcp)
            shouted = dns.name.from_text(question.name.to_text().upper())
            real.question[0].name = shouted
            for rrset in real.answer:
                if rrset.name == question.name:
                    rrset.name = shouted
            return [real.to_wire()]
        if fault in (Fault.WRONG_ID, Fault.WRONG_ID_THEN_RIGHT):
            real = self._forward(query, tcp)
            wrong = dns.message.from_wire(real.to_wire())
            wrong.id = (query.id + 1) & 0xFFFF
            out = [wrong.to_wire()]
            if fault is Fault.WRONG_ID_THEN_RIGHT:
                out.append(real.to_wire())
            return out
        if fault is Fault.CNAME_LOOP:
            reply = dns.message.make_response(query)
            other = dns.name.from_text("loop-b", question.name)
            reply.answer.append(dns.rrset.from_text(question.name, 60, "IN", "CNAME", other.to_text()))
            reply.answer.append(dns.rrset.from_text(other, 60, "IN", "CNAME", question.name.to_text()))
            return [reply.to_wire()]
        if fault is Fault.TRUNCATE:
            if tcp:
                return [self._forward(query, True).to_wire()]
            reply = dns.message.make_response(query)
            reply.flags |= dns.flags.TC
            return [reply.to_wire()]
        if fault is Fault.HUGE_TXT:
            real = self._forward(query, True)
            padding = dns.rrset.from_text(
                dns.name.from_text("padding.invalid"), 60, "IN", "TXT", *[f'"{"x" * 250}"' for _ in range(80)]
            )
            real.additional.append(padding)
            full = real.to_wire(max_size=65535)
            if tcp:
                return [full]
            truncated = dns.message.make_response(query)
            truncated.flags |= dns.flags.TC
            return [truncated.to_wire()]
        raise AssertionError(fault)

    # -- servers -------------------------------------------------------------------
    def start(self) -> FaultResponder:
        responder = self

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                responder.counts.udp += 1
                for out in responder.answer(data, tcp=False):
                    sock.sendto(out, self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                sock: socket.socket = self.request
                sock.settimeout(5)
                try:
                    while True:
                        head = _recv_exactly(sock, 2)
                        if not head:
                            return
                        data = _recv_exactly(sock, int.from_bytes(head, "big"))
                        responder.counts.tcp += 1
                        for out in responder.answer(data, tcp=True):
                            sock.sendall(len(out).to_bytes(2, "big") + out)
                except OSError:
                    return

        class UdpServer(socketserver.ThreadingUDPServer):
            daemon_threads = True
            allow_reuse_address = True

        class TcpServer(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        # Port 0 would be the kernel's pick from the ephemeral range, free for UDP but maybe taken for TCP by
        # an outgoing connection: take one below that range (free_port), and another if it went meanwhile.
        for attempt in range(5):
            port = self.port or free_port(self.address)
            try:
                udp = UdpServer((self.address, port), Udp)
            except OSError:
                if self.port or attempt == 4:
                    raise
                continue
            try:
                tcp = TcpServer((self.address, port), Tcp)
            except OSError:
                udp.server_close()
                if self.port or attempt == 4:
                    raise
                continue
            break
        self.port = port
        self._servers = [udp, tcp]
        for server in self._servers:
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    @property
    def nameserver(self) -> str:
        return f"{self.address}:{self.port}"


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data
