"""The decision log: one structured log line per decision, and the same record stored.

`DecisionLog.record` never blocks and never fails the mail: records go into a
bounded queue that a background task writes in batches; when the queue is
full the record is counted as dropped (the log line is still written).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

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


class DecisionSink(Protocol):
    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None: ...


def make_record(
    report: Report,
    decision: Decision,
    *,
    session: str,
    recipients: Sequence[str] = (),
    node: str = "",
    at: datetime | None = None,
) -> DecisionRecord:
    reply = decision.reply
    return DecisionRecord(
        at=at or datetime.now(UTC),
        session=session,
        client_ip=str(report.ip),
        ptr=report.iprev.shown_name,
        helo=printable(report.helo_name, 255) if report.helo_name is not None else None,
        sender=printable(report.sender_address, 320) if report.sender_address is not None else None,
        recipients=tuple(printable(item, 320) for item in recipients),
        profile=decision.profile,
        action=decision.action.value,
        stage=decision.stage.value if decision.stage else None,
        reply=str(reply) if reply else None,
        checks={
            item.check.value: {
                "result": item.result.value,
                "reason": item.reason,
                "detail": printable(item.detail, 400),
            }
            for item in report.checks
        },
        whitelisted=decision.whitelisted,
        node=node,
    )


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


def log_line(record: DecisionRecord) -> str:
    """The record as one JSON log line (checks as "result/reason"); json.dumps escapes every client string."""
    line = record_dict(record)
    del line["at"], line["node"]  # the log line has its own time stamp and host
    line["checks"] = {name: f"{item['result']}/{item['reason']}" for name, item in record.checks.items()}
    return json.dumps({"event": "decision", **line}, separators=(",", ":"))


class DecisionLog:
    def __init__(self, sink: DecisionSink | None, maxsize: int = 10_000) -> None:
        self.sink = sink
        self.queue: asyncio.Queue[DecisionRecord] = asyncio.Queue(maxsize)
        self.dropped = 0
        self.written = 0
        self.failed = 0
        self.counts: dict[tuple[str, str, str], int] = {}  # (check, result, action) -> decisions
        self._task: asyncio.Task[None] | None = None
        self._busy = False

    def record(self, record: DecisionRecord) -> None:
        log.info("%s", log_line(record))
        for check, outcome in record.checks.items():
            key = (check, outcome["result"], record.action)
            self.counts[key] = self.counts.get(key, 0) + 1
        if self.sink is None:
            return
        try:
            self.queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    def start(self) -> None:
        if self.sink is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._write_forever(), name="decision-log")

    async def _write_forever(self) -> None:
        while True:
            batch = [await self.queue.get()]
            if self.queue.qsize() < BATCH:
                await asyncio.sleep(LINGER)  # one commit for many records under load
            while len(batch) < BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._busy = True
            try:
                await self._write(batch)
            finally:
                self._busy = False

    async def _write(self, batch: list[DecisionRecord]) -> None:
        assert self.sink is not None
        try:
            await self.sink.decisions_add(batch)
        except Exception:
            self.failed += len(batch)
            errors.exception("could not store %d decisions", len(batch))
        else:
            self.written += len(batch)

    async def close(self, timeout: float = 5.0) -> None:
        """Let the writer store what is queued (within `timeout`), then stop it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._task is not None and (self._busy or not self.queue.empty()) and loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.dropped += self.queue.qsize()  # what the deadline left unwritten


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
    if record.whitelisted:
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
