"""The whitelist: IP networks and sender domains that skip the checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rdnsgate.model import WhitelistEntry
from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.changes import log_change
from rdnsgate.storage.schema import whitelist

CHANGED = "rdnsgate_whitelist"  # the PostgreSQL channel told of every whitelist change


async def _changed(connection: AsyncConnection) -> None:
    """On PostgreSQL, tell every listening node (at commit) that the whitelist changed."""
    if connection.dialect.name == "postgresql":
        await connection.execute(sa.select(sa.func.pg_notify(CHANGED, "")))


class WhitelistTables(Tables):
    async def whitelist_add(self, entry: WhitelistEntry, actor: str = "") -> tuple[WhitelistEntry, bool]:
        """Add `entry`, or update the entry for the same IP/network/domain; True when it is new.

        `actor` (who does it) is kept on the entry and in the change log."""
        async with self.engine.begin() as connection:
            return await self.whitelist_add_in(connection, entry, actor)

    async def whitelist_add_in(
        self, connection: AsyncConnection, entry: WhitelistEntry, actor: str
    ) -> tuple[WhitelistEntry, bool]:
        """`whitelist_add` within the caller's transaction (a granted exception and its entry are one change)."""
        created = utc(entry.created_at) or datetime.now(UTC)
        values: dict[str, Any] = {"reason": entry.reason, "ticket": entry.ticket, "expires_at": utc(entry.expires_at)}
        existing = (
            await connection.execute(
                sa.select(whitelist.c.id).where(whitelist.c.kind == entry.kind, whitelist.c.value == entry.value)
            )
        ).scalar_one_or_none()
        await _changed(connection)
        expiry = f", expires {values['expires_at']:%Y-%m-%d %H:%M} UTC" if values["expires_at"] else ""
        detail = f"{entry.reason}{f' [{entry.ticket}]' if entry.ticket else ''}{expiry}"
        action = "add" if existing is None else "update"
        values["changed_at"] = await log_change(connection, actor, "whitelist", action, entry.value, detail)
        values["changed_by"] = actor
        if existing is None:
            result = await connection.execute(
                whitelist.insert().values(kind=entry.kind, value=entry.value, created_at=created, **values)
            )
            new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
            return self._entry(
                {**values, "id": new_id, "kind": entry.kind, "value": entry.value, "created_at": created}
            ), True
        await connection.execute(whitelist.update().where(whitelist.c.id == existing).values(**values))
        row = (await connection.execute(sa.select(whitelist).where(whitelist.c.id == existing))).mappings().one()
        return self._entry(dict(row)), False

    async def whitelist_list(self, now: datetime | None = None) -> list[WhitelistEntry]:
        """Every entry, or only those still active at `now`."""
        query = sa.select(whitelist).order_by(whitelist.c.id)
        if now is not None:
            query = query.where(sa.or_(whitelist.c.expires_at.is_(None), whitelist.c.expires_at > now))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [self._entry(dict(row)) for row in rows]

    async def whitelist_remove(self, kind: str, value: str, actor: str = "") -> int:
        return await self._whitelist_remove(sa.and_(whitelist.c.kind == kind, whitelist.c.value == value), actor)

    async def whitelist_remove_id(self, entry_id: int, actor: str = "") -> int:
        return await self._whitelist_remove(whitelist.c.id == entry_id, actor)

    async def _whitelist_remove(self, where: sa.ColumnElement[bool], actor: str) -> int:
        async with self.engine.begin() as connection:
            gone = (await connection.execute(whitelist.delete().where(where).returning(whitelist.c.value))).all()
            for (value,) in gone:
                await log_change(connection, actor, "whitelist", "remove", value)
            await _changed(connection)
        return len(gone)

    @staticmethod
    def _entry(row: dict[str, Any]) -> WhitelistEntry:
        return WhitelistEntry(
            kind=row["kind"],
            value=row["value"],
            reason=row["reason"],
            ticket=row["ticket"],
            created_at=utc(row["created_at"]),
            expires_at=utc(row["expires_at"]),
            id=row["id"],
            changed_by=row["changed_by"],
            changed_at=utc(row["changed_at"]),
        )
