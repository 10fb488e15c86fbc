"""``rdnsgate audit``: check every address of ranges or a file, streaming one row each.

Addresses are generated lazily and checked by a fixed pool of workers, and
rows are written as they finish, so memory stays flat on a /16 (or a /8).
A bad file line is reported on stderr and skipped; the run goes on.
"""

from __future__ import annotations

import asyncio
import csv
import ipaddress
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rdnsgate.checks.names import parse_ip
from rdnsgate.config import CheckSettings, DnsSettings
from rdnsgate.errors import UsageError
from rdnsgate.lookups import build_resolver
from rdnsgate.model import IPAddress, Result
from rdnsgate.policy.evaluate import Engine

MAX_NETWORK = 1 << 24
COLUMNS = (
    "ip",
    "iprev",
    "reason",
    "ptr_names",
    "confirmed_name",
    "helo",
    "helo_result",
    "helo_reason",
    "helo_align",
    "detail",
)


class Format(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


@dataclass(frozen=True, slots=True)
class Target:
    ip: IPAddress
    helo: str | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    where: str
    message: str


@dataclass
class Source:
    items: Iterable[Target | BadLine]
    total: int | None


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(f"{text!r} is not an IP address or network") from None
    if network.num_addresses > MAX_NETWORK:
        raise UsageError(f"{text} holds {network.num_addresses:,} addresses; audit at most {MAX_NETWORK:,} per network")
    return network


def _expand(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> Iterator[Target]:
    for network in networks:
        for ip in network:
            yield Target(parse_ip(str(ip)) if ip.version == 6 else ip)


def _read_lines(lines: Iterable[str], name: str) -> Iterator[Target | BadLine]:
    for number, line in enumerate(lines, 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        where = f"{name}:{number}"
        if len(fields) > 2:
            yield BadLine(where, f"expected 'IP [HELO]', found {line.strip()!r}")
            continue
        try:
            ip = parse_ip(fields[0])
        except ValueError:
            yield BadLine(where, f"{fields[0]!r} is not an IP address")
            continue
        yield Target(ip, fields[1] if len(fields) == 2 else None)


def _file_lines(file: Path) -> Iterator[Target | BadLine]:
    if str(file) == "-":
        yield from _read_lines(sys.stdin, "stdin")
        return
    with open(file, encoding="utf-8", errors="replace") as handle:
        yield from _read_lines(handle, str(file))


def targets_from(args: list[str], file: Path | None) -> Source:
    """Validate the arguments now (errors before any query); expand them lazily."""
    networks = [_network(text) for text in args]
    total: int | None = sum(network.num_addresses for network in networks)
    parts: list[Iterable[Target | BadLine]] = [_expand(networks)]
    if file is not None:
        if str(file) != "-" and not file.is_file():
            raise UsageError(f"{file}: no such file")
        parts.append(_file_lines(file))
        total = None
    return Source((item for part in parts for item in part), total)


@dataclass
class Summary:
    total: int = 0
    skipped: int = 0
    iprev: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    helo: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    def exit_status(self) -> int:
        failed = (
            self.iprev[Result.FAIL]
            + self.iprev[Result.PERMERROR]
            + self.helo[Result.FAIL]
            + self.helo[Result.PERMERROR]
        )
        if failed:
            return 1
        if self.iprev[Result.TEMPERROR] or self.helo[Result.TEMPERROR]:
            return 3
        return 0


async def _check(engine: Engine, target: Target) -> dict[str, Any]:
    iprev = await engine.iprev(target.ip)
    outcome = iprev.result
    row: dict[str, Any] = {
        "ip": str(target.ip),
        "iprev": outcome.result.value,
        "reason": outcome.reason,
        "ptr_names": [item.name for item in iprev.names] + list(iprev.invalid_names),
        "confirmed_name": iprev.confirmed_name or "",
        "helo": target.helo or "",
        "helo_result": "",
        "helo_reason": "",
        "helo_align": "",
        "detail": outcome.detail,
    }
    if target.helo is not None:
        helo, align = await engine.helo(target.helo, target.ip, iprev)
        row.update(helo_result=helo.result.value, helo_reason=helo.reason, helo_align=align.result.value)
        if helo.result is not Result.PASS:
            row["detail"] += f"; HELO: {helo.detail}"
    return row


class _Writer:
    def __init__(self, fmt: Format, out: TextIO) -> None:
        self.fmt = fmt
        self.out = out
        self.csv = csv.writer(out, lineterminator="\n") if fmt is Format.CSV else None
        if self.csv is not None:
            self.csv.writerow(COLUMNS)

    def write(self, row: dict[str, Any]) -> None:
        if self.csv is not None:
            values = [" ".join(row[key]) if key == "ptr_names" else row[key] for key in COLUMNS]
            self.csv.writerow(values)
        else:
            self.out.write(json.dumps(row, separators=(",", ":")) + "\n")


async def run_audit(
    source: Source,
    dns: DnsSettings,
    concurrency: int,
    fmt: Format,
    out: TextIO,
    err: Console,
    show_progress: bool,
) -> Summary:
    resolver = build_resolver(dns)
    engine = Engine(resolver, CheckSettings())
    writer = _Writer(fmt, out)
    summary = Summary()
    items = iter(source.items)
    progress = Progress(
        TextColumn("auditing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not show_progress,
    )
    task = progress.add_task("audit", total=source.total)

    async def worker() -> None:
        for item in items:
            if isinstance(item, BadLine):
                summary.skipped += 1
                err.print(f"{item.where}: {item.message} (skipped)", markup=False)
                continue
            row = await _check(engine, item)
            writer.write(row)
            summary.total += 1
            summary.iprev[row["iprev"]] += 1
            summary.reasons[row["reason"]] += 1
            if row["helo_result"]:
                summary.helo[row["helo_result"]] += 1
            if show_progress:
                progress.advance(task)

    try:
        with progress:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await resolver.close()
        out.flush()
    summary.elapsed = time.monotonic() - summary.started
    return summary


def print_summary(err: Console, summary: Summary) -> None:
    rate = summary.total / summary.elapsed if summary.elapsed > 0 else 0.0
    err.print(f"audited {summary.total:,} addresses in {summary.elapsed:.1f} s ({rate:,.0f}/s)", markup=False)
    for result in Result:
        if summary.iprev[result]:
            err.print(f"  iprev {result.value:<10} {summary.iprev[result]:>9,}", markup=False)
    for reason, count in summary.reasons.most_common():
        err.print(f"    {reason:<18} {count:>9,}", markup=False)
    for word, count in summary.helo.most_common():
        err.print(f"  helo  {word:<10} {count:>9,}", markup=False)
    if summary.skipped:
        err.print(f"  skipped lines     {summary.skipped:>9,}", markup=False)
