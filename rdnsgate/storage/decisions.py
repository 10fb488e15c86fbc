"""The decision log: one row per decision, searched by client, sender, HELO and time."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rdnsgate.logs import json_string
from rdnsgate.model import DecisionRecord
from rdnsgate.storage.base import Tables, sqlite_pragmas, utc
from rdnsgate.storage.schema import decisions

_COLUMNS = (
    "at", "node", "session", "client_ip", "ptr", "helo", "sender",
    "recipients", "profile", "action", "stage", "reply", "checks", "whitelisted",
)  # fmt: skip
_INSERT = {
    sqlite: f"INSERT INTO decisions ({', '.join(_COLUMNS)}) VALUES "
    + "({})".format(", ".join("?" if sqlite else f"${number}" for number in range(1, len(_COLUMNS) + 1)))
    for sqlite in (True, False)
}
_encode = json.JSONEncoder(separators=(",", ":")).encode
_CHECKS_KEPT = 4096
_checks_text: dict[int, tuple[dict[str, Any], str]] = {}


def _checks_json(checks: dict[str, Any]) -> str:
    """The JSON of a record's checks; records of one report share the dict (never changed), so it is made once."""
    known = _checks_text.get(id(checks))
    if known is not None and known[0] is checks:
        return known[1]
    text = _encode(checks)
    if len(_checks_text) >= _CHECKS_KEPT:
        _checks_text.clear()
    _checks_text[id(checks)] = (checks, text)
    return text


def _json_strings(items: tuple[str, ...]) -> str:
    """`items` as a JSON array, as `_encode` writes it (a property test holds the two together)."""
    return f"[{','.join(map(json_string, items))}]"


def _row(item: DecisionRecord, sqlite: bool) -> tuple[Any, ...]:
    """One record as the driver takes it: the time as SQLite text (SQLAlchemy's DateTime format: UTC, no
    offset) or a datetime (asyncpg), JSON as text."""
    at = item.at
    if at is None or at.tzinfo is not UTC:  # the records the services make are in UTC already
        at = utc(at) or datetime.now(UTC)
    return (
        at.replace(tzinfo=None).isoformat(" ", "microseconds") if sqlite else at,
        item.node,
        item.session,
        item.client_ip,
        item.ptr,
        item.helo,
        item.sender,
        _json_strings(item.recipients),
        item.profile,
        item.action,
        item.stage,
        item.reply,
        _checks_json(item.checks),
        item.whitelisted,
    )


class SqliteWriter:
    """Decision rows into a SQLite file over a connection of its own, in a thread of its own.

    One hop to the thread per batch (BEGIN, the executemany and COMMIT all run
    there), where a transaction on the shared aiosqlite engine makes about ten,
    each a wake-up of its thread and then of the event loop: ~1.3 ms of CPU per
    batch against ~0.1 ms (BENCHMARKS.md, "What limits the policy service").
    WAL lets this connection write while the engine's read.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="rdnsgate-decisions")
        self._connection: sqlite3.Connection | None = None

    def _write(self, rows: list[tuple[Any, ...]]) -> None:  # in the writer's thread
        if self._connection is None:
            connection = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            sqlite_pragmas(connection, None)
            self._connection = connection
        connection = self._connection
        connection.execute("BEGIN")
        try:
            connection.executemany(_INSERT[True], rows)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    async def write(self, rows: list[tuple[Any, ...]]) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._write, rows)

    def _close(self) -> None:  # in the writer's thread
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close)
        self._thread.shutdown()


class DecisionTables(Tables):
    _sqlite_writer: SqliteWriter | None = None

    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None:
        """Store `records` in one transaction, as one executemany of plain rows.

        The rows go to the driver as the column types would make them (`_row`)
        without SQLAlchemy's per-row parameter processing, which cost more
        than the insert itself (BENCHMARKS.md, "What limits the decision log");
        a test holds what is read back to what the typed insert stores.  A
        SQLite file gets them through its `SqliteWriter`.
        """
        if not records:
            return
        url = self.engine.url
        if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            if self._sqlite_writer is None:
                self._sqlite_writer = SqliteWriter(url.database)
            await self._sqlite_writer.write([_row(item, True) for item in records])
            return
        async with self.engine.begin() as connection:
            sqlite = connection.dialect.name == "sqlite"
            await connection.exec_driver_sql(_INSERT[sqlite], [_row(item, sqlite) for item in records])

    async def decisions_close(self) -> None:
        """Let go of the SQLite writer's connection and thread (the store closes)."""
        writer, self._sqlite_writer = self._sqlite_writer, None
        if writer is not None:
            await writer.close()

    async def decisions_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(sa.select(sa.func.count()).select_from(decisions))).scalar() or 0)

    async def decisions_prune(self, before: datetime, batch: int = 1000) -> int:
        """Delete up to `batch` decisions older than `before` (the oldest first); the number deleted.

        Small batches keep each transaction short, so writers never wait long;
        on PostgreSQL rows another node is pruning are skipped, not waited for.
        """
        doomed = (
            sa.select(decisions.c.id)
            .where(decisions.c.at < utc(before))
            .order_by(decisions.c.at)
            .limit(batch)
            .with_for_update(skip_locked=True)
        )
        async with self.engine.begin() as connection:
            result = await connection.execute(decisions.delete().where(decisions.c.id.in_(doomed.scalar_subquery())))
        return int(result.rowcount or 0)

    async def decisions_find(
        self,
        *,
        ip: str | None = None,
        sender: str | None = None,
        helo: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
    ) -> list[DecisionRecord]:
        """Newest first."""
        query = sa.select(decisions).order_by(decisions.c.at.desc(), decisions.c.id.desc()).limit(limit)
        if ip is not None:
            query = query.where(decisions.c.client_ip == ip)
        if sender is not None:
            pattern = sender.lower()
            query = query.where(sa.func.lower(decisions.c.sender).contains(pattern, autoescape=True))
        if helo is not None:
            query = query.where(sa.func.lower(decisions.c.helo).contains(helo.lower(), autoescape=True))
        if since is not None:
            query = query.where(decisions.c.at >= since)
        if until is not None:
            query = query.where(decisions.c.at <= until)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            DecisionRecord(
                at=utc(row["at"]) or datetime.now(UTC),
                session=row["session"],
                client_ip=row["client_ip"],
                ptr=row["ptr"],
                helo=row["helo"],
                sender=row["sender"],
                recipients=tuple(row["recipients"] or ()),
                profile=row["profile"],
                action=row["action"],
                stage=row["stage"],
                reply=row["reply"],
                checks=row["checks"] or {},
                whitelisted=row["whitelisted"],
                node=row["node"],
                id=row["id"],
            )
            for row in rows
        ]
