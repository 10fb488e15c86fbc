"""What one audit process could do at best in Python, and what each of rdnsgate's pieces adds to it.

A minimal loop on uvloop with one raw UDP socket asks, for each address of the
benchmark's /16 (bench/zones.py), the PTR and then the A record of its name,
100 addresses at once, and compares the address: no retries, no objects, the
least Python a check can take.  Then, step by step, rdnsgate's own pieces take
the place of the minimal ones:

  0  the minimal loop (queries built with struct, names read by hand)
  1  + rdnsgate's query encoder (lookups/wire.py)
  2  + its reply decoder and `Chase` (a reply -> a `Lookup`), `names_to_examine`
  3  + `evaluate_iprev` (the report, as every face gets it)
  4  + the audit's row and CSV line
  Q  the audit's common pass on the minimal loop: rdnsgate's query encoder,
     `only_record` for both replies, `is_postfix_hostname`, the row of a
     confirmed name and its CSV line (what the audit itself does for a
     passing address), nothing else
  C  the same common pass asked through rdnsgate's `BulkClient` (random
     IDs, replies matched by ID and question, retries, timeouts, the queries
     of a turn sent together), without the iprev chain, the resolver layer
     and the audit's own plumbing
  5  `rdnsgate audit --workers 1` itself (its client with retries and
     timeouts, the callbacks, the process)

Each is run in one process against one knotd (no root needed: rdnsgate and
this loop take a port), and prints checks/s and the CPU (user + system) per
check.  This is what BENCHMARKS.md's "What limits rdnsgate" cites.

    .venv/bin/python bench/audit_floor.py [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import resource
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.zones import NETWORK, zones  # noqa: E402
from rdnsgate.checks.iprev import evaluate_iprev, names_to_examine  # noqa: E402
from rdnsgate.checks.names import is_postfix_hostname, reverse_pointer  # noqa: E402
from rdnsgate.frontends.cli.audit import Target, _row, confirmed_row, format_row  # noqa: E402
from rdnsgate.frontends.cli.options import Format  # noqa: E402
from rdnsgate.lookups.bulk import BulkClient  # noqa: E402
from rdnsgate.lookups.lookup import Chase  # noqa: E402
from rdnsgate.lookups.nameservers import parse_nameserver  # noqa: E402
from rdnsgate.lookups.wire import decode_reply, encode_query, encode_question, only_record  # noqa: E402
from rdnsgate.model import Lookup  # noqa: E402
from tests.harness.knot import KnotServer, free_port  # noqa: E402

INFLIGHT = 100
QUICK = -1  # level Q
LEVELS = {
    0: "minimal loop",
    1: "+ query encoder",
    2: "+ reply decoder, Chase, names_to_examine",
    3: "+ evaluate_iprev",
    4: "+ audit row and CSV line",
    QUICK: "the common pass on the minimal loop (encoder, only_record, row)",
}
PTR, A = 12, 1


def _name(msg: bytes, offset: int) -> tuple[str, int]:
    labels = []
    while True:
        count = msg[offset]
        if count >= 0xC0:
            return _name(msg, ((count & 0x3F) << 8) | msg[offset + 1])[0], offset + 2
        offset += 1
        if count == 0:
            break
        labels.append(msg[offset : offset + count])
        offset += count
    return b".".join(labels).decode(), offset


def _first_answer(msg: bytes) -> int | None:
    """Offset of the first answer's data, or None when there is no answer."""
    if not (msg[6] << 8) | msg[7]:
        return None
    _, offset = _name(msg, 12)
    _, offset = _name(msg, offset + 4)
    return offset + 10


async def _loop(address: tuple[str, int], count: int, level: int) -> tuple[float, float, int]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.connect(address)
    pending: dict[int, Callable[[bytes], None]] = {}
    state = {"qid": 0}
    rows: list[str] = []

    def send(qname: str, qtype: int, callback: Callable[[bytes], None]) -> None:
        state["qid"] = qid = (state["qid"] + 1) & 0xFFFF
        pending[qid] = callback
        if level >= 1 or level == QUICK:
            sock.send(encode_query(qid, encode_question(qname, qtype)))
        else:
            wire = b"".join(bytes([len(label)]) + label for label in qname.encode().split(b".")) + b"\0"
            sock.send(struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + wire + struct.pack("!HH", qtype, 1))

    def start() -> None:
        ip = tally.next_ip()
        if ip is None:
            return
        reverse = reverse_pointer(ip)
        done = tally.done

        def judged(ptr: Lookup, forward: dict[str, Lookup]) -> None:
            if level < 3:
                done(bool(forward) and str(ip) in next(iter(forward.values())).records)
                return
            report = evaluate_iprev(ip, ptr, forward)
            if level >= 4:
                rows.append(format_row(Format.CSV, _row(Target(ip, None, str(ip)), report)))
            done(report.result.result.value == "pass")

        def got_ptr(msg: bytes) -> None:
            if level == QUICK:
                name = only_record(msg, 12 + len(reverse) + 2 + 4, PTR)
                if not isinstance(name, str) or not is_postfix_hostname(name):
                    done(False)
                    return
                send(name, A, lambda reply: got_a_quick(reply, name))
                return
            if level >= 2:
                ptr = Chase(reverse, "PTR").step(decode_reply(msg))
                assert ptr is not None
                names = names_to_examine(ptr).examined
                if not names:
                    judged(ptr, {})
                    return
                send(names[0], 1, lambda reply: got_a(reply, ptr, names[0]))
                return
            offset = _first_answer(msg)
            if offset is None:
                done(False)
                return
            send(_name(msg, offset)[0], 1, lambda reply: got_a(reply, None, ""))

        def got_a_quick(msg: bytes, name: str) -> None:
            text = str(ip)
            if only_record(msg, 12 + len(name) + 2 + 4, A) != text:
                done(False)
                return
            rows.append(format_row(Format.CSV, confirmed_row(Target(ip, None, text), name)))
            done(True)

        def got_a(msg: bytes, ptr: Lookup | None, name: str) -> None:
            if level >= 2:
                forward = Chase(name, "A").step(decode_reply(msg))
                assert ptr is not None and forward is not None
                judged(ptr, {name: forward})
                return
            offset = _first_answer(msg)
            done(offset is not None and msg[offset : offset + 4] == ip.packed)

        send(reverse, 12, got_ptr)

    def readable() -> None:
        while True:
            try:
                msg = sock.recv(4096)
            except BlockingIOError:
                return
            callback = pending.pop((msg[0] << 8) | msg[1], None)
            if callback is not None:
                callback(msg)

    tally = _Tally(count, start)
    loop.add_reader(sock.fileno(), readable)
    try:
        return await tally.run()
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()


async def _client(nameserver: str, count: int) -> tuple[float, float, int]:
    """Level C: the common pass asked through `BulkClient`, each reply offered to a `quick` callback as the
    audit's chain offers it; any other outcome counts as not passing (the benchmark's broken tenth)."""
    client = BulkClient([parse_nameserver(nameserver)], max_inflight=INFLIGHT)
    rows: list[str] = []

    def start() -> None:
        ip = tally.next_ip()
        if ip is None:
            return
        text = str(ip)
        done = tally.done

        def quick_a(name: str, reply: bytes, answer_at: int) -> bool:
            if only_record(reply, answer_at, A) != text:
                done(False)
                return True
            rows.append(format_row(Format.CSV, confirmed_row(Target(ip, None, text), name)))
            done(True)
            return True

        def quick_ptr(reply: bytes, answer_at: int) -> bool:
            name = only_record(reply, answer_at, PTR)
            if not isinstance(name, str) or not is_postfix_hostname(name):
                done(False)
                return True
            client.ask(name, A, lambda _outcome: done(False), None, lambda *got: quick_a(name, *got))
            return True

        client.ask(reverse_pointer(ip), PTR, lambda _outcome: done(False), None, quick_ptr)

    tally = _Tally(count, start)
    try:
        return await tally.run()
    finally:
        await client.close()


class _Tally:
    """The checks of one level: the next address, how many ended and passed.  `INFLIGHT` checks start at
    once and each ended check starts the next (`start`), until `count` have ended."""

    def __init__(self, count: int, start: Callable[[], None]) -> None:
        self.count, self.start = count, start
        self.started = self.ended = self.passed = 0
        self.finished = asyncio.get_running_loop().create_future()

    def next_ip(self) -> ipaddress.IPv4Address | None:
        if self.started >= self.count:
            return None
        self.started += 1
        return ipaddress.IPv4Address(int(NETWORK.network_address) + self.started - 1)

    def done(self, passed: bool) -> None:
        self.ended += 1
        self.passed += passed
        if self.ended == self.count:
            self.finished.set_result(None)
        else:
            self.start()

    async def run(self) -> tuple[float, float, int]:
        """(checks/s, CPU µs per check, checks passed)"""
        began, used = time.perf_counter(), _cpu()
        for _ in range(INFLIGHT):
            self.start()
        await self.finished
        wall, cpu = time.perf_counter() - began, _cpu() - used
        return self.count / wall, cpu / self.count * 1e6, self.passed


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _audit(nameserver: str) -> tuple[float, float]:
    """`rdnsgate audit --workers 1` of the whole network: checks/s and CPU per check (start-up included)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    command = [str(ROOT / ".venv" / "bin" / "rdnsgate"), "audit", str(NETWORK), "--workers", "1"]
    command += ["--nameserver", nameserver, "--format", "csv", "--no-progress"]
    proc = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    wall = time.perf_counter() - began
    if proc.returncode not in (0, 1):
        raise SystemExit(proc.stderr.decode(errors="replace"))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return NETWORK.num_addresses / wall, cpu / NETWORK.num_addresses * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import gc

    import uvloop

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)  # as the audit's workers run
    count = NETWORK.num_addresses
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rdnsgate")], check=True)  # as installed
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="rdnsgate-floor-") as tmp:
        port = free_port("127.0.0.1")
        with KnotServer(Path(tmp) / "knot", zones(), address="127.0.0.1", port=port, udp_workers=2) as knot:
            results: dict[str, list[tuple[float, float]]] = {}
            for _ in range(args.runs):
                for level, what in LEVELS.items():
                    rate, cpu, passed = uvloop.run(_loop(("127.0.0.1", port), count, level))
                    if passed != count - count // 10:
                        raise SystemExit(f"level {level}: {passed} passed, expected {count - count // 10}")
                    results.setdefault(f"{'Q' if level == QUICK else level}  {what}", []).append((rate, cpu))
                rate, cpu, passed = uvloop.run(_client(knot.nameserver, count))
                if passed != count - count // 10:
                    raise SystemExit(f"level C: {passed} passed, expected {count - count // 10}")
                results.setdefault("C  the common pass through BulkClient", []).append((rate, cpu))
                results.setdefault("5  rdnsgate audit --workers 1", []).append(_audit(knot.nameserver))
    print(f"{count:,} addresses, one process each, {args.runs} runs; load average {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")  # fmt: skip
    print("| level | checks/s (each run) | CPU µs per check (each run) |")
    print("|---|---|---|")
    for name, runs in results.items():
        rates = ", ".join(f"{rate:,.0f}" for rate, _ in runs)
        cpus = ", ".join(f"{cpu:.0f}" for _, cpu in runs)
        print(f"| {name} | {rates} | {cpus} |")


if __name__ == "__main__":
    main()
