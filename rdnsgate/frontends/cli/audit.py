"""``rdnsgate audit``: check every address of ranges or a file, streaming one row each.

Addresses are generated lazily and checked by a fixed pool of workers, and
rows are written as they finish, so memory stays flat on a /16 (or a /8).
A bad file line is reported on stderr and skipped; the run goes on.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import ipaddress
import json
import multiprocessing
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rdnsgate.checks.iprev import confirmed_detail, forward_type
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import CheckSettings, DnsSettings
from rdnsgate.errors import RdnsgateError, UsageError
from rdnsgate.frontends.cli.exits import for_result
from rdnsgate.frontends.cli.options import Format
from rdnsgate.frontends.cli.runtime import run_loop, tune_gc
from rdnsgate.lookups import build_bulk_resolver, build_resolver
from rdnsgate.model import IPAddress, IprevReport, Result
from rdnsgate.policy.evaluate import BulkIprev, Engine

MAX_NETWORK = 1 << 24
BATCH = 256  # addresses handed out at once (to a worker process, or from the generator); rows written at once
FLUSH_EVERY = 0.5  # seconds: no row waits longer than this to be written (a slow audit still streams)
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


Key = tuple[str, str, str]  # what the summary counts of a row: its iprev result, reason and HELO result
CONFIRMED: Key = (Result.PASS.value, "confirmed", "")  # the key of `confirmed_row`


class Target(NamedTuple):
    ip: IPAddress
    helo: str | None
    text: str  # str(ip), made once: the row and the worker processes take it


@dataclass(frozen=True, slots=True)
class BadLine:
    where: str
    message: str


class Span(NamedTuple):
    """`size` consecutive addresses of one network from `first` (as an integer): a worker process's batch,
    made into `Target`s there, so that the addresses of a range are never made, sent and read twice."""

    version: int
    first: int
    size: int


@dataclass
class Source:
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]
    file: Path | None
    total: int | None

    @property
    def items(self) -> Iterator[Target | BadLine]:
        """Every address of the networks, then the file's lines."""
        for span in _spans(self.networks):
            yield from span_targets(span)
        if self.file is not None:
            yield from _file_lines(self.file)

    def batches(self) -> Iterator[Span | BadLine | list[tuple[str, str | None]]]:
        """The same, for worker processes: the networks as `Span`s, the file's lines as lists of (ip, helo)."""
        yield from _spans(self.networks)
        if self.file is None:
            return
        for item in in_batches(_file_lines(self.file)):
            yield item if isinstance(item, BadLine) else [(target.text, target.helo) for target in item]


def in_batches(items: Iterable[Target | BadLine]) -> Iterator[list[Target] | BadLine]:
    """`items` in lists of at most `BATCH` targets; a bad line is handed on as it comes."""
    batch: list[Target] = []
    for item in items:
        if isinstance(item, BadLine):
            yield item
            continue
        batch.append(item)
        if len(batch) >= BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        network = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise UsageError(f"{text!r} is not an IP address or network") from None
    if network.num_addresses > MAX_NETWORK:
        raise UsageError(f"{text} holds {network.num_addresses:,} addresses; audit at most {MAX_NETWORK:,} per network")
    return network


def _spans(networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> Iterator[Span]:
    for network in networks:
        first, end = int(network.network_address), int(network.broadcast_address) + 1
        for start in range(first, end, BATCH):
            yield Span(network.version, start, min(BATCH, end - start))


def span_targets(span: Span) -> list[Target]:
    if span.version == 4:  # the text from the number: half the time of str(ip) (a property test holds it)
        return [
            Target(ipaddress.IPv4Address(n), None, f"{n >> 24}.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}")
            for n in range(span.first, span.first + span.size)
        ]
    ips = [parse_ip(str(ipaddress.IPv6Address(number))) for number in range(span.first, span.first + span.size)]
    return [Target(ip, None, str(ip)) for ip in ips]  # an IPv4-mapped address is audited as IPv4


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
        yield Target(ip, fields[1] if len(fields) == 2 else None, str(ip))


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
    if file is not None:
        if str(file) != "-" and not file.is_file():
            raise UsageError(f"{file}: no such file")
        total = None
    return Source(networks, file, total)


@dataclass
class Summary:
    total: int = 0
    skipped: int = 0
    iprev: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    helo: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    elapsed: float = 0.0

    def count(self, counts: Counter[Key]) -> None:
        """Add the rows of a batch, counted by `Key`."""
        for (iprev, reason, helo), number in counts.items():
            self.total += number
            self.iprev[iprev] += number
            self.reasons[reason] += number
            if helo:
                self.helo[helo] += number

    def exit_status(self) -> int:
        failed = (
            self.iprev[Result.FAIL]
            + self.iprev[Result.PERMERROR]
            + self.helo[Result.FAIL]
            + self.helo[Result.PERMERROR]
        )
        if failed:
            return for_result(Result.FAIL)
        if self.iprev[Result.TEMPERROR] or self.helo[Result.TEMPERROR]:
            return for_result(Result.TEMPERROR)
        return for_result(Result.PASS)


def _row(target: Target, iprev: IprevReport) -> dict[str, Any]:
    outcome = iprev.result
    return {
        "ip": target.text,
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


def confirmed_row(target: Target, name: str) -> dict[str, Any]:
    """The row of the common pass, from the confirmed name alone (`BulkIprev.check`'s `confirmed`): the row
    `_row` makes of the report `evaluate_iprev` gives then (a property test holds the two together)."""
    return {
        "ip": target.text,
        "iprev": Result.PASS.value,
        "reason": "confirmed",
        "ptr_names": [name],
        "confirmed_name": name,
        "helo": "",
        "helo_result": "",
        "helo_reason": "",
        "helo_align": "",
        "detail": confirmed_detail(name, forward_type(target.ip), target.text),
    }


def confirmed_line(fmt: Format, target: Target, name: str) -> str:
    """`format_row(fmt, confirmed_row(target, name))`, for CSV written at once: `name` passed
    `is_postfix_hostname` (letters, digits, ``-``, ``_``, dots), so no field of it needs quotes (a property
    test holds the two together)."""
    if fmt is Format.CSV:
        text = target.text
        return f"{text},pass,confirmed,{name},{name},,,,,{confirmed_detail(name, forward_type(target.ip), text)}\n"
    return format_row(fmt, confirmed_row(target, name))


async def _add_helo(engine: Engine, target: Target, iprev: IprevReport, row: dict[str, Any]) -> dict[str, Any]:
    assert target.helo is not None
    helo, align = await engine.helo(target.helo, target.ip, iprev)
    row.update(helo_result=helo.result.value, helo_reason=helo.reason, helo_align=align.result.value)
    if helo.result is not Result.PASS:
        row["detail"] += f"; HELO: {helo.detail}"
    return row


_CSV_PLAIN = re.compile(r'[^",\r\n]*\Z')
_CSV_PLAIN_LINE = re.compile(r'[^"\r\n]*\Z')
_COMMAS = len(COLUMNS) - 1


def _csv_field(value: str) -> str:
    """RFC 4180: quote a field holding a comma, quote or line break (as the csv module would)."""
    if _CSV_PLAIN.match(value):
        return value
    return '"' + value.replace('"', '""') + '"'


def format_row(fmt: Format, row: dict[str, Any]) -> str:
    """One output line (with its newline) for a checked address."""
    if fmt is Format.JSONL:
        return json.dumps(row, separators=(",", ":")) + "\n"
    values = [" ".join(row[key]) if key == "ptr_names" else row[key] for key in COLUMNS]
    line = ",".join(values)
    if line.count(",") == _COMMAS and _CSV_PLAIN_LINE.match(line):  # no field needs quotes: the common case
        return line + "\n"
    return ",".join(map(_csv_field, values)) + "\n"


def header(fmt: Format) -> str:
    return ",".join(COLUMNS) + "\n" if fmt is Format.CSV else ""


async def check_all(
    next_batch: Callable[[], Awaitable[list[Target] | None]],
    dns: DnsSettings,
    concurrency: int,
    rows: RowBatches,
) -> None:
    """Check targets, `concurrency` at once, until `next_batch` gives None; each row goes to `rows`.

    The iprev chains run on callbacks (`BulkIprev`: no coroutine per address or
    question), and a finished check starts the next target in the same callback;
    this coroutine only fetches batches.  A target with a HELO has its HELO
    lookups done by the `Engine` afterwards, as `rdnsgate check` does them.
    """
    loop = asyncio.get_running_loop()
    bulk_resolver = build_bulk_resolver(dns)
    bulk = BulkIprev(bulk_resolver, CheckSettings())
    resolver = build_resolver(dns)
    engine = Engine(resolver, CheckSettings())
    queue: collections.deque[Target] = collections.deque()
    active = 0
    wake: asyncio.Future[None] | None = None  # set when the queue runs low or the last check ends
    failure: list[BaseException] = []
    helo_tasks: set[asyncio.Task[dict[str, Any]]] = set()

    def start_more() -> None:
        nonlocal active
        while active < concurrency and queue and not failure:
            active += 1
            start(queue.popleft())

    def ended() -> None:
        nonlocal active
        active -= 1
        start_more()
        if (len(queue) < concurrency or not active or failure) and wake is not None and not wake.done():
            wake.set_result(None)

    def finished(row: dict[str, Any] | None) -> None:
        if row is not None:
            try:
                rows.add(row)
            except BaseException as exc:  # the output is gone (a closed pipe): stop
                failure.append(exc)
        ended()

    def confirmed(target: Target, name: str) -> None:
        """`finished(confirmed_row(target, name))`, the row's line made at once (`confirmed_line`)."""
        try:
            rows.add_confirmed(target, name)
        except BaseException as exc:
            failure.append(exc)
        ended()

    def helo_done(task: asyncio.Task[dict[str, Any]]) -> None:
        helo_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            failure.append(exc)
            finished(None)
        else:
            finished(task.result())

    def start(target: Target) -> None:
        def iprev_done(iprev: IprevReport) -> None:
            row = _row(target, iprev)
            if target.helo is None:
                finished(row)
                return
            task = asyncio.ensure_future(_add_helo(engine, target, iprev, row))
            helo_tasks.add(task)
            task.add_done_callback(helo_done)

        if target.helo is None:  # the common pass needs no report (BulkIprev.check)
            bulk.check(target.ip, iprev_done, functools.partial(confirmed, target), target.text)
        else:
            bulk.check(target.ip, iprev_done, text=target.text)

    exhausted = False
    try:
        while not failure:
            if len(queue) < concurrency and not exhausted:
                batch = await next_batch()
                if batch is None:
                    exhausted = True
                else:
                    queue.extend(batch)
                start_more()
                continue
            if exhausted and not active and not queue:
                break
            wake = loop.create_future()
            await wake
        if failure:
            raise failure[0]
    finally:
        for task in list(helo_tasks):
            task.cancel()
        await bulk_resolver.close()
        await resolver.close()


def _progress(err: Console, show: bool) -> Progress:
    columns = (TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    return Progress(*columns, console=err, disable=not show)


def _report_bad(err: Console, summary: Summary, item: BadLine) -> None:
    summary.skipped += 1
    err.print(f"{item.where}: {item.message} (skipped)", markup=False)


class RowBatches:
    """Rows formatted and handed on `BATCH` at a time, or at most `FLUSH_EVERY` seconds after the first one
    waiting: one write (or one message from a worker process) per batch, not per row, and a slow audit
    still streams.  `send` gets the batch's text and its rows counted by `Key`; an error of a timed send
    (the output is gone: a closed pipe) is raised at the next row, which stops the audit.
    """

    def __init__(self, fmt: Format, send: Callable[[str, Counter[Key]], None]) -> None:
        self.fmt, self.send = fmt, send
        self.lines: list[str] = []
        self.keys: list[Key] = []
        self.timer: asyncio.TimerHandle | None = None
        self.broken: BaseException | None = None

    def add(self, row: dict[str, Any]) -> None:
        self._add(format_row(self.fmt, row), (row["iprev"], row["reason"], row["helo_result"]))

    def add_confirmed(self, target: Target, name: str) -> None:
        """`add(confirmed_row(target, name))`, made at once (`confirmed_line`)."""
        self._add(confirmed_line(self.fmt, target, name), CONFIRMED)

    def _add(self, line: str, key: Key) -> None:
        if self.broken is not None:
            raise self.broken
        self.lines.append(line)
        self.keys.append(key)
        if len(self.lines) >= BATCH:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(FLUSH_EVERY, self._later)

    def flush(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.lines:
            text, counts = "".join(self.lines), Counter(self.keys)
            self.lines, self.keys = [], []
            self.send(text, counts)

    def _later(self) -> None:
        self.timer = None
        try:
            self.flush()
        except BaseException as exc:
            self.broken = exc


async def run_audit(
    source: Source,
    dns: DnsSettings,
    concurrency: int,
    fmt: Format,
    out: TextIO,
    err: Console,
    show_progress: bool,
) -> Summary:
    """Audit in this process: one event loop, `concurrency` addresses at once."""
    summary = Summary()
    batches_of_targets = in_batches(source.items)
    progress = _progress(err, show_progress)
    task = progress.add_task("audit", total=source.total)
    out.write(header(fmt))

    async def next_batch() -> list[Target] | None:
        for item in batches_of_targets:
            if not isinstance(item, BadLine):
                return item
            _report_bad(err, summary, item)
        return None

    def write(text: str, counts: Counter[Key]) -> None:
        out.write(text)
        summary.count(counts)
        if show_progress:
            progress.advance(task, counts.total())

    batches = RowBatches(fmt, write)
    try:
        with progress:
            await check_all(next_batch, dns, concurrency, batches)
    finally:
        batches.flush()
        out.flush()
    summary.elapsed = time.monotonic() - summary.started
    return summary


# -- several processes ---------------------------------------------------------------------

_DONE = "done"
_ERROR = "error"


def _child(tasks: Any, results: Any, dns: DnsSettings, concurrency: int, fmt: Format) -> None:
    """A worker process: check the batches it takes (`Source.batches`), send back text and counts."""
    tune_gc()
    try:
        run_loop(_child_async(tasks, results, dns, concurrency, fmt))
    except Exception as exc:
        results.put((_ERROR, f"{type(exc).__name__}: {exc}"))
        return
    results.put((_DONE, None))


async def _child_async(tasks: Any, results: Any, dns: DnsSettings, concurrency: int, fmt: Format) -> None:
    loop = asyncio.get_running_loop()

    async def next_batch() -> list[Target] | None:
        batch = await loop.run_in_executor(None, tasks.get)
        if batch is None:
            return None
        if isinstance(batch, Span):
            return span_targets(batch)
        return [Target(parse_ip(ip), helo, ip) for ip, helo in batch]

    def send(text: str, counts: Counter[Key]) -> None:
        results.put(("rows", (text, counts)))

    batches = RowBatches(fmt, send)
    try:
        await check_all(next_batch, dns, concurrency, batches)
    finally:
        batches.flush()


def run_audit_processes(
    source: Source,
    dns: DnsSettings,
    concurrency: int,
    workers: int,
    fmt: Format,
    out: TextIO,
    err: Console,
    show_progress: bool,
) -> Summary:
    """Audit with `workers` processes, each with its own event loop and `concurrency` addresses at once.

    The parent hands out batches through a bounded queue (memory stays flat),
    writes the rows as they come back, and keeps the summary.
    """
    # Fork (where there is one) before this process has a thread or an event loop: the
    # children start at once with everything imported.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context: Any = multiprocessing.get_context(method)
    tasks = context.Queue(maxsize=workers * 4)
    results = context.Queue()
    children = [
        context.Process(target=_child, args=(tasks, results, dns, concurrency, fmt), daemon=True)
        for _ in range(workers)
    ]
    for child in children:
        child.start()
    summary = Summary()
    feeder_error: list[BaseException] = []

    def feed() -> None:
        try:
            for item in source.batches():
                if isinstance(item, BadLine):
                    _report_bad(err, summary, item)
                else:
                    tasks.put(item)
        except BaseException as exc:
            feeder_error.append(exc)
        finally:
            for _ in children:
                tasks.put(None)

    feeder = threading.Thread(target=feed, name="audit-feeder", daemon=True)
    feeder.start()
    progress = _progress(err, show_progress)
    task = progress.add_task("audit", total=source.total)
    out.write(header(fmt))
    done = 0
    with progress:
        while done < len(children):
            kind, payload = results.get()
            if kind == _DONE:
                done += 1
            elif kind == _ERROR:
                for child in children:
                    child.terminate()
                raise RdnsgateError(f"an audit worker failed: {payload}")
            else:
                text, counts = payload
                out.write(text)
                summary.count(counts)
                if show_progress:
                    progress.advance(task, counts.total())
    out.flush()
    feeder.join()
    for child in children:
        child.join(timeout=10)
    if feeder_error:
        raise feeder_error[0]
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
