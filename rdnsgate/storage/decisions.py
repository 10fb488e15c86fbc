"""The decision log: one row per decision, searched by client, sender, HELO and time."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from rdnsgate.model import DecisionRecord
from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.schema import decisions


class DecisionTables(Tables):
    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "at": utc(item.at),
                "node": item.node,
                "session": item.session,
                "client_ip": item.client_ip,
                "ptr": item.ptr,
                "helo": item.helo,
                "sender": item.sender,
                "recipients": list(item.recipients),
                "profile": item.profile,
                "action": item.action,
                "stage": item.stage,
                "reply": item.reply,
                "checks": item.checks,
                "whitelisted": item.whitelisted,
            }
            for item in records
        ]
        async with self.engine.begin() as connection:
            await connection.execute(decisions.insert(), rows)

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
