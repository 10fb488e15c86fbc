"""The decision log: one structured log line per decision, and the same record stored.

`DecisionLog.record` never blocks and never fails the mail: records go into a
bounded queue that a background task writes in batches, holding a batch and
trying again while the store is away; when the queue is full the record is
counted as dropped (the log line is still written).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from rdnsgate import logs
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import parse_moment
from rdnsgate.errors import UsageError
from rdnsgate.model import DecisionRecord, Report
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.headers import printable

log = logging.getLogger("rdnsgate.decision")
errors = logging.getLogger(__name__)

BATCH = 200
LINGER = 0.1  # seconds the writer waits for more records before a commit
RETRY_FIRST = 0.5  # seconds before a batch the store refused is tried again; doubled each time
RETRY_MAX = 10.0
DROPS_SAID_EVERY = 60.0  # seconds: dropped records are logged at most this often


class DecisionSink(Protocol):
    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None: ...


class _Shared:
    """What every record of one (report, decision) has in common, made once."""

    __slots__ = (
        "action", "checks", "client_ip", "helo", "parts", "profile", "ptr", "reply", "sender", "stage", "whitelisted",
    )  # fmt: skip

    def __init__(self, report: Report, decision: Decision) -> None:
        reply = decision.reply
        self.client_ip = str(report.ip)
        self.ptr = report.iprev.shown_name
        self.helo = printable(report.helo_name, 255) if report.helo_name is not None else None
        self.sender = printable(report.sender_address, 320) if report.sender_address is not None else None
        self.profile = decision.profile
        self.action = decision.action.value
        self.stage = decision.stage.value if decision.stage else None
        self.reply = str(reply) if reply else None
        self.checks = checks_of(report)
        self.whitelisted = decision.whitelisted
        self.parts: _Parts | None = None  # its log line's (`_parts_of`), made with its first record


_KEPT = 4096  # the memos below hold at most this many entries, then start again
_shared: dict[tuple[int, int], tuple[Report, Decision, _Shared]] = {}


def _shared_of(report: Report, decision: Decision) -> _Shared:
    key = (id(report), id(decision))
    known = _shared.get(key)
    if known is not None and known[0] is report and known[1] is decision:
        return known[2]
    shared = _Shared(report, decision)
    if len(_shared) >= _KEPT:
        _shared.clear()
    _shared[key] = (report, decision, shared)
    return shared


def make_record(
    report: Report,
    decision: Decision,
    *,
    session: str,
    recipients: Sequence[str] = (),
    node: str = "",
    at: datetime | None = None,
) -> DecisionRecord:
    return _record(_shared_of(report, decision), session, recipients, node, at)


def _record(shared: _Shared, session: str, recipients: Sequence[str], node: str, at: datetime | None) -> DecisionRecord:
    return DecisionRecord(
        at or datetime.now(UTC),
        session,
        shared.client_ip,
        shared.ptr,
        shared.helo,
        shared.sender,
        tuple([printable(item, 320) for item in recipients]),
        shared.profile,
        shared.action,
        shared.stage,
        shared.reply,
        shared.checks,
        shared.whitelisted,
        node,
    )


_checks: dict[int, tuple[Report, dict[str, dict[str, str]]]] = {}


def checks_of(report: Report) -> dict[str, dict[str, str]]:
    """The checks of `report` as a record holds them; the same dict for the same report (never changed after)."""
    known = _checks.get(id(report))
    if known is not None and known[0] is report:
        return known[1]
    checks = {
        item.check.value: {"result": item.result.value, "reason": item.reason, "detail": printable(item.detail, 400)}
        for item in report.checks
    }
    if len(_checks) >= _KEPT:
        _checks.clear()
    _checks[id(report)] = (report, checks)
    return checks


def record_dict(record: DecisionRecord) -> dict[str, Any]:
    """The record as a JSON-ready dict (``rdnsgate decisions --json``)."""
    return {
        "at": record.at.isoformat(),
        "session": record.session,
        "client_ip": record.client_ip,
        "ptr": record.ptr,
        "helo": record.helo,
        "sender": record.sender,
        "recipients": list(record.recipients),
        "profile": record.profile,
        "action": record.action,
        "stage": record.stage,
        "reply": record.reply,
        "checks": record.checks,
        "whitelisted": record.whitelisted,
        "node": record.node,
    }


def log_line_general(record: DecisionRecord) -> str:
    """The record as one JSON log line (checks as "result/reason"); json.dumps escapes every client string.

    `log_line` gives the same line faster; a property test holds the two together.
    """
    line = record_dict(record)
    del line["at"], line["node"]  # the log line has its own time stamp and host
    line["checks"] = {name: f"{item['result']}/{item['reason']}" for name, item in record.checks.items()}
    return json.dumps({"event": "decision", **line}, separators=(",", ":"))


_dumps = json.JSONEncoder(separators=(",", ":")).encode
_Parts = tuple[str, str, tuple[tuple[str, str, str], ...]]  # (head, tail, the (check, result, action) counts)
# The parts of a line that the records of one report and decision share, by the record's fields with `checks`
# by identity (the dict is shared and never changed; it is kept to be compared).
_parts: dict[tuple[Any, ...], tuple[dict[str, dict[str, str]], str, str, tuple[tuple[str, str, str], ...]]] = {}


def _parts_of(record: DecisionRecord) -> _Parts:
    checks = record.checks
    key = (
        record.client_ip, record.ptr, record.helo, record.sender, record.profile,
        record.action, record.stage, record.reply, id(checks), record.whitelisted,
    )  # fmt: skip
    known = _parts.get(key)
    if known is not None and known[0] is checks:
        return known[1], known[2], known[3]
    head = _dumps({"client_ip": record.client_ip, "ptr": record.ptr, "helo": record.helo, "sender": record.sender})
    tail = _dumps(
        {
            "profile": record.profile,
            "action": record.action,
            "stage": record.stage,
            "reply": record.reply,
            "checks": {name: f"{item['result']}/{item['reason']}" for name, item in checks.items()},
            "whitelisted": record.whitelisted,
        }
    )
    counted = tuple((name, item["result"], record.action) for name, item in checks.items())
    if len(_parts) >= _KEPT:
        _parts.clear()
    _parts[key] = (checks, head[1:-1], tail[1:], counted)
    return head[1:-1], tail[1:], counted


def _line(record: DecisionRecord) -> tuple[str, tuple[tuple[str, str, str], ...]]:
    """The log line, from parts made once per report, and the (check, result, action) counts it adds to."""
    parts = _parts_of(record)
    return _joined(record, parts), parts[2]


def _joined(record: DecisionRecord, parts: _Parts) -> str:
    quoted = logs.json_string
    recipients = ",".join(map(quoted, record.recipients))
    return f'{{"event":"decision","session":{quoted(record.session)},{parts[0]},"recipients":[{recipients}],{parts[1]}'


def log_line(record: DecisionRecord) -> str:
    """The record as one JSON log line, as `log_line_general` makes it."""
    return _line(record)[0]


class DecisionLog:
    """The bounded queue of records and the task that writes them in batches.

    A batch the store refused (the database is away or failing) is held and
    tried again, waiting longer each time (up to `RETRY_MAX` seconds); new
    records queue behind it meanwhile, so nothing is lost unless the queue
    fills.  Records beyond the queue are counted in `dropped`, and said in
    the log at most once a minute.  `store_error` says why the last write
    failed (None once one succeeds): the health of the store as the mail path
    sees it.
    """

    def __init__(self, sink: DecisionSink | None, maxsize: int = 10_000) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[DecisionRecord] = asyncio.Queue(maxsize)
        self.held: list[DecisionRecord] = []  # the batch being written, or waiting to be tried again
        self.dropped = 0
        self.written = 0
        self.failed = 0  # write attempts that failed
        self.counts: dict[tuple[str, str, str], int] = {}  # (check, result, action) -> decisions
        self.store_error: str | None = None
        self.away_since: float | None = None  # loop time of the first failure of the current outage
        self._task: asyncio.Task[None] | None = None
        self._dropped_said = 0
        self._said_at = -DROPS_SAID_EVERY

    @property
    def backlog(self) -> int:
        """Records waiting to be stored."""
        return self.queue.qsize() + len(self.held)

    def record(self, record: DecisionRecord) -> None:
        self._keep(record, *_line(record))

    def record_decision(
        self, report: Report, decision: Decision, *, session: str, recipients: Sequence[str] = (), node: str = ""
    ) -> None:
        """``record(make_record(report, decision, ...))``, the line's shared parts found without a lookup once
        the first record of `report` and `decision` made them."""
        shared = _shared_of(report, decision)
        record = _record(shared, session, recipients, node, None)
        parts = shared.parts
        if parts is None:
            parts = shared.parts = _parts_of(record)
        self._keep(record, _joined(record, parts), parts[2])

    def _keep(self, record: DecisionRecord, line: str, counted: tuple[tuple[str, str, str], ...]) -> None:
        logs.info(log, line)
        counts = self.counts
        for key in counted:
            counts[key] = counts.get(key, 0) + 1
        if self.sink is None:
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1
            self._say_drops()

    def _say_drops(self, *, now: bool = False) -> None:
        """Log the records dropped since the last time this was said (at most once a minute unless `now`)."""
        loop_time = time.monotonic()
        new = self.dropped - self._dropped_said
        if new <= 0 or (not now and loop_time - self._said_at < DROPS_SAID_EVERY):
            return
        self._dropped_said, self._said_at = self.dropped, loop_time
        errors.warning(
            "%d decision records dropped: the queue of %d was full (%s); %d dropped since start",
            new,
            self.queue.maxsize,
            f"store away: {self.store_error}" if self.store_error else "the store is slow",
            self.dropped,
        )

    def start(self) -> None:
        if self.sink is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_forever(), name="decision-log")

    async def _write_forever(self) -> None:
        delay = RETRY_FIRST
        while True:
            if not self.held:
                batch = [await self.queue.get()]
                if self.queue.qsize() < BATCH:
                    await asyncio.sleep(LINGER)  # one commit for many records under load
                while len(batch) < BATCH and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                self.held = batch
            if await self._write(self.held):
                self.held = []
                delay = RETRY_FIRST
            else:
                self._say_drops()
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX)

    async def _write(self, batch: list[DecisionRecord]) -> bool:
        assert self.sink is not None
        loop = asyncio.get_running_loop()
        try:
            await self.sink.decisions_add(batch)
        except Exception as exc:
            self.failed += 1
            first = self.store_error is None
            self.store_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            if first:
                self.away_since = loop.time()
                errors.exception("could not store %d decisions; keeping them and trying again", len(batch))
            return False
        self.written += len(batch)
        if self.store_error is not None:
            away = loop.time() - (self.away_since or loop.time())
            errors.warning("the store is back after %.0f s; %d decisions waiting to be written", away, self.backlog)
            self._say_drops(now=True)
            self.store_error = self.away_since = None
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Let the writer store what is queued (within `timeout`), then stop it; what is left is dropped."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._task is not None and self.backlog and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.dropped += self.backlog  # what the deadline left unwritten
        self.held = []
        while not self.queue.empty():
            self.queue.get_nowait()
        self._say_drops(now=True)


@dataclass(frozen=True, slots=True)
class Explanation:
    """One decision in words, for the CLI and the web app."""

    who: str  # "192.0.2.1 (mail.example.org)"
    what: str  # "HELO x, MAIL FROM <a@b>, to c@d"
    outcome: str  # accepted | refused | deferred
    verdict: str  # "reject at RCPT: 550 ..." or "accepted: whitelisted (...)"
    why: tuple[str, ...]  # each check that did not pass, in words


def explain(record: DecisionRecord) -> Explanation:
    who = f"{record.client_ip} ({record.ptr})" if record.ptr else f"{record.client_ip} (no PTR name)"
    mail = f"MAIL FROM <{record.sender}>" if record.sender is not None else "before MAIL FROM"
    what = f"HELO {record.helo or '-'}, {mail}"
    if record.recipients:
        what += f", to {', '.join(record.recipients)}"
    if record.action == "skipped":
        outcome, verdict = "accepted", f"not checked: {record.whitelisted or 'skipped'}"
    elif record.whitelisted:
        outcome, verdict = "accepted", f"accepted: whitelisted ({record.whitelisted})"
    elif record.action in ("reject", "tempfail"):
        outcome = "refused" if record.action == "reject" else "deferred"
        verdict = f"{record.action} at {(record.stage or '-').upper()}: {record.reply or ''}"
    else:
        outcome, verdict = "accepted", record.action
    why = tuple(
        f"{name} {item['result']} ({item['reason']}): {item['detail']}"
        for name, item in record.checks.items()
        if item["result"] not in ("pass", "none")
    )
    return Explanation(who, what, outcome, verdict, why)


def search_terms(
    ip: str | None, sender: str | None, helo: str | None, since: str | None, until: str | None, now: datetime
) -> dict[str, Any]:
    """A decision-log search as typed by a person (CLI or web) -> the arguments of `decisions_find`.

    Empty fields search nothing; times are "2h", "7d" ago or ISO times.  Raises UsageError.
    """
    for name, value in (("ip", ip), ("sender", sender), ("helo", helo), ("since", since), ("until", until)):
        if value and "\x00" in value:  # no record holds one, and PostgreSQL refuses it in a query
            raise UsageError(f"{name} contains a NUL character")
    client = None
    if ip and ip.strip():
        try:
            client = str(parse_ip(ip.strip()))
        except ValueError:
            raise UsageError(f"{ip!r} is not an IP address") from None
    return {
        "ip": client,
        "sender": sender.strip() or None if sender else None,
        "helo": helo.strip() or None if helo else None,
        "since": parse_moment(since, now, ago=True) if since and since.strip() else None,
        "until": parse_moment(until, now, ago=True) if until and until.strip() else None,
    }
