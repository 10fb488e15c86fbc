"""Who changed the whitelist and the fleet, and when: one row per change, written in the change's transaction."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.schema import changes


async def log_change(
    connection: AsyncConnection, actor: str, subject: str, action: str, target: str, detail: str = ""
) -> datetime:
    """Record one change (inside the caller's transaction); its time."""
    now = datetime.now(UTC)
    await connection.execute(
        changes.insert().values(
            at=now, actor=actor[:100], subject=subject, action=action, target=target[:255], detail=detail[:2000]
        )
    )
    return now


class ChangeTables(Tables):
    async def changes_list(self, subjects: tuple[str, ...] = (), limit: int = 50) -> list[dict[str, Any]]:
        """The latest changes (of `subjects`: whitelist, fleet, exception; all when empty), newest first."""
        query = sa.select(changes).order_by(changes.c.at.desc(), changes.c.id.desc()).limit(limit)
        if subjects:
            query = query.where(changes.c.subject.in_(subjects))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [{**dict(row), "at": utc(row["at"])} for row in rows]
