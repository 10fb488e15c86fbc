"""The nodes sharing the store: who runs what, when each was last seen, its decision backlog; the schema version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa

from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.schema import nodes


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    roles: str  # "gateway,web"
    version: str
    started_at: datetime
    last_seen: datetime
    backlog: int  # decisions waiting to be written, when last seen
    dropped: int  # decisions dropped since the node started


class NodeTables(Tables):
    async def node_seen(self, node: Node) -> None:
        """Say that `node` is alive (insert or update its row)."""
        values = {
            "roles": node.roles,
            "version": node.version,
            "started_at": utc(node.started_at),
            "last_seen": utc(node.last_seen),
            "backlog": node.backlog,
            "dropped": node.dropped,
        }
        async with self.engine.begin() as connection:
            updated = await connection.execute(nodes.update().where(nodes.c.name == node.name).values(**values))
            if not updated.rowcount:
                await connection.execute(nodes.insert().values(name=node.name, **values))

    async def nodes_list(self) -> list[Node]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(sa.select(nodes).order_by(nodes.c.name))).mappings().all()
        return [
            Node(
                name=row["name"],
                roles=row["roles"],
                version=row["version"],
                started_at=utc(row["started_at"]) or row["started_at"],
                last_seen=utc(row["last_seen"]) or row["last_seen"],
                backlog=row["backlog"],
                dropped=row["dropped"],
            )
            for row in rows
        ]

    async def nodes_forget(self, before: datetime) -> int:
        """Forget nodes not seen since `before`."""
        async with self.engine.begin() as connection:
            result = await connection.execute(nodes.delete().where(nodes.c.last_seen < utc(before)))
        return int(result.rowcount or 0)

    async def schema_version(self) -> str | None:
        """The Alembic revision the store is at (None before the first migration)."""
        async with self.engine.connect() as connection:
            try:
                return (await connection.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()
            except sa.exc.DBAPIError:
                return None
