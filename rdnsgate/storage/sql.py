"""The store: every table family through SQLAlchemy Core (async), in SQLite or PostgreSQL.

One implementation for SQLite (``sqlite:///var/rdnsgate.db``, the embedded
default, through aiosqlite with WAL so the CLI and a running gateway can share
the file) and PostgreSQL (``postgresql://...``, through asyncpg, for several
nodes).  Each table family has its module (whitelist, decisions, fleet,
admins); `SqlStore` is all of them on one engine.  The schema is brought up
to date by Alembic when the store opens.  Times are stored and returned in UTC.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rdnsgate.storage.admins import AdminTables
from rdnsgate.storage.base import async_url, upgrade
from rdnsgate.storage.decisions import DecisionTables
from rdnsgate.storage.fleet import FleetTables
from rdnsgate.storage.whitelist import WhitelistTables


class SqlStore(WhitelistTables, DecisionTables, FleetTables, AdminTables):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def migrate(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # first: the WAL switch itself may wait for another process
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; safe against crashes
    cursor.close()


async def open_store(url: str, *, migrate: bool = True) -> SqlStore:
    """Open the store at `url` and bring its schema up to date."""
    engine = create_async_engine(async_url(url))
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    store = SqlStore(engine)
    if migrate:
        await store.migrate()
    return store
