"""The fleet: watched sending servers, their checks' history and their alerts.

Several monitor nodes share the fleet through leases: `fleet_claim` gives a
node the servers that are due and that no other node holds (on PostgreSQL
``FOR UPDATE SKIP LOCKED``, so two nodes never claim the same row; SQLite
has one writer at a time), and `fleet_record` stores a check only while
the node still holds its lease, so a node that lost its lease (it was too
slow, or taken for dead) records nothing and sends no alert.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rdnsgate.model import FleetEntry
from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.changes import log_change
from rdnsgate.storage.schema import alerts, fleet, fleet_checks


class FleetTables(Tables):
    async def fleet_add(self, entry: FleetEntry, actor: str = "") -> tuple[FleetEntry, bool]:
        """Watch `entry.ip`, or update its HELO and label when it is watched already; True when new."""
        added = await self.fleet_add_many([entry], actor)
        return added[0]

    async def fleet_add_many(self, entries: Sequence[FleetEntry], actor: str = "") -> list[tuple[FleetEntry, bool]]:
        """`fleet_add` for each of `entries`, in one transaction (all or none); each as stored, and whether new."""
        done = []
        async with self.engine.begin() as connection:
            for entry in entries:
                existing = (
                    await connection.execute(
                        sa.select(fleet.c.id, fleet.c.helo, fleet.c.label).where(fleet.c.ip == entry.ip)
                    )
                ).first()
                detail = f"HELO {entry.helo or '-'}, label {entry.label or '-'}"
                if existing is None:
                    at = await log_change(connection, actor, "fleet", "add", entry.ip, detail)
                    await connection.execute(
                        fleet.insert().values(
                            ip=entry.ip,
                            helo=entry.helo,
                            label=entry.label,
                            state="unknown",
                            since=utc(entry.since) or at,
                            changed_by=actor,
                            changed_at=at,
                        )
                    )
                elif (existing.helo, existing.label) != (entry.helo, entry.label):
                    at = await log_change(connection, actor, "fleet", "update", entry.ip, detail)
                    await connection.execute(
                        fleet.update()
                        .where(fleet.c.id == existing.id)
                        .values(helo=entry.helo, label=entry.label, changed_by=actor, changed_at=at)
                    )
                row = (await connection.execute(sa.select(fleet).where(fleet.c.ip == entry.ip))).mappings().one()
                done.append((_fleet_entry(dict(row)), existing is None))
        return done

    async def fleet_list(self) -> list[FleetEntry]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(sa.select(fleet).order_by(fleet.c.id))).mappings().all()
        return [_fleet_entry(dict(row)) for row in rows]

    async def fleet_remove(self, ip: str, actor: str = "") -> int:
        async with self.engine.begin() as connection:
            entry_id = (await connection.execute(sa.select(fleet.c.id).where(fleet.c.ip == ip))).scalar()
            if entry_id is None:
                return 0
            await connection.execute(alerts.delete().where(alerts.c.fleet_id == entry_id))
            await connection.execute(fleet_checks.delete().where(fleet_checks.c.fleet_id == entry_id))
            await connection.execute(fleet.delete().where(fleet.c.id == entry_id))
            await log_change(connection, actor, "fleet", "remove", ip)
        return 1

    async def fleet_claim(self, node: str, now: datetime, lease: float, limit: int) -> list[FleetEntry]:
        """Lease to `node`, for `lease` seconds, up to `limit` servers that are due and not leased; them, as stored."""
        due = sa.or_(fleet.c.next_check.is_(None), fleet.c.next_check <= utc(now))
        free = sa.or_(fleet.c.lease_until.is_(None), fleet.c.lease_until < utc(now))
        pick = (
            sa.select(fleet.c.id)
            .where(due, free)
            .order_by(fleet.c.next_check.is_not(None), fleet.c.next_check, fleet.c.id)  # never checked first
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            fleet.update()
            .where(fleet.c.id.in_(pick.scalar_subquery()), due, free)
            .values(lease_node=node, lease_until=utc(now + timedelta(seconds=lease)))
            .returning(*fleet.c)
        )
        async with self.engine.begin() as connection:
            rows = (await connection.execute(claim)).mappings().all()
        return sorted((_fleet_entry(dict(row)) for row in rows), key=lambda entry: entry.id or 0)

    async def fleet_release(self, node: str) -> int:
        """Give up every lease `node` holds (it stops); those servers are due to the other nodes at once."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                fleet.update().where(fleet.c.lease_node == node).values(lease_node=None, lease_until=None)
            )
        return int(result.rowcount or 0)

    async def fleet_record(
        self,
        entry: FleetEntry,
        at: datetime,
        seen: str,
        detail: str,
        alert: tuple[str, str] | None,
        *,
        next_check: datetime | None = None,
        node: str | None = None,
    ) -> bool:
        """Store one check of `entry` (already carrying its new state), and its alert if any.

        With `node`, only while that node holds the server's lease (which is
        then given up).  False when nothing was stored: the server was removed
        meanwhile, or its lease has passed to another node.
        """
        assert entry.id is not None
        where = [fleet.c.id == entry.id] + ([fleet.c.lease_node == node] if node is not None else [])
        async with self.engine.begin() as connection:
            updated = await connection.execute(
                fleet.update()
                .where(*where)
                .values(
                    **_tracker_values(entry),
                    last_checked=utc(at),
                    last_chain=entry.last_chain,
                    next_check=utc(next_check),
                    lease_node=None,
                    lease_until=None,
                )
            )
            if not updated.rowcount:
                return False
            await connection.execute(
                fleet_checks.insert().values(
                    fleet_id=entry.id,
                    at=utc(at),
                    seen=seen,
                    state=entry.state,
                    chain=entry.last_chain or {},
                    detail=detail,
                )
            )
            if alert is not None:
                await connection.execute(
                    alerts.insert().values(
                        fleet_id=entry.id, at=utc(at), before=alert[0], after=alert[1], detail=detail
                    )
                )
        return True

    async def fleet_save_state(self, entry: FleetEntry) -> None:
        """Store `entry`'s state, since, last good chain and pending change (an admin's acceptance)."""
        async with self.engine.begin() as connection:
            await connection.execute(fleet.update().where(fleet.c.ip == entry.ip).values(**_tracker_values(entry)))

    async def fleet_get(self, ip: str) -> FleetEntry | None:
        async with self.engine.connect() as connection:
            row = (await connection.execute(sa.select(fleet).where(fleet.c.ip == ip))).mappings().one_or_none()
        return _fleet_entry(dict(row)) if row is not None else None

    async def fleet_history(
        self, ip: str, since: datetime | None = None, limit: int = 2000, *, oldest: bool = False
    ) -> list[dict[str, Any]]:
        """The stored checks of `ip`, oldest first (the newest `limit` of them; the oldest with `oldest`)."""
        query = (
            sa.select(
                fleet_checks.c.at,
                fleet_checks.c.seen,
                fleet_checks.c.state,
                fleet_checks.c.chain,
                fleet_checks.c.detail,
            )
            .join(fleet, fleet.c.id == fleet_checks.c.fleet_id)
            .where(fleet.c.ip == ip)
            .order_by(
                *(
                    (fleet_checks.c.at, fleet_checks.c.id)
                    if oldest
                    else (fleet_checks.c.at.desc(), fleet_checks.c.id.desc())
                )
            )
            .limit(limit)
        )
        if since is not None:
            query = query.where(fleet_checks.c.at >= since)
        async with self.engine.connect() as connection:
            rows = [dict(row) for row in (await connection.execute(query)).mappings().all()]
        for row in rows:
            row["at"] = utc(row["at"])
        return rows if oldest else rows[::-1]

    async def fleet_prune(self, before: datetime) -> int:
        """Forget fleet checks older than `before` (alerts stay)."""
        async with self.engine.begin() as connection:
            result = await connection.execute(fleet_checks.delete().where(fleet_checks.c.at < before))
        return int(result.rowcount or 0)

    async def fleet_alerts(self, ip: str, limit: int = 50) -> list[dict[str, Any]]:
        query = (
            sa.select(alerts.c.at, alerts.c.before, alerts.c.after, alerts.c.detail)
            .join(fleet, fleet.c.id == alerts.c.fleet_id)
            .where(fleet.c.ip == ip)
            .order_by(alerts.c.at.desc(), alerts.c.id.desc())
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            rows = [dict(row) for row in (await connection.execute(query)).mappings().all()]
        for row in rows:
            row["at"] = utc(row["at"])
        return rows


def _tracker_values(entry: FleetEntry) -> dict[str, Any]:
    """The monitor's state of `entry` as column values."""
    return {
        "state": entry.state,
        "since": utc(entry.since),
        "last_good": entry.last_good,
        "candidate": entry.candidate,
        "candidate_count": entry.candidate_count,
    }


def _fleet_entry(row: dict[str, Any]) -> FleetEntry:
    return FleetEntry(
        ip=row["ip"],
        helo=row["helo"],
        label=row["label"],
        state=row["state"],
        since=utc(row["since"]),
        last_good=row["last_good"],
        candidate=row["candidate"],
        candidate_count=row["candidate_count"],
        last_checked=utc(row["last_checked"]),
        last_chain=row["last_chain"],
        id=row["id"],
        changed_by=row["changed_by"],
        changed_at=utc(row["changed_at"]),
    )
