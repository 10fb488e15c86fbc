"""The store: every table family through SQLAlchemy Core (async), in SQLite or PostgreSQL.

One implementation for SQLite (``sqlite:///var/rdnsgate.db``, the embedded
default, through aiosqlite with WAL so the CLI and a running gateway can share
the file) and PostgreSQL (``postgresql://...``, through asyncpg, for several
nodes).  Each table family has its module (whitelist, decisions, fleet,
admins); `SqlStore` is all of them on one engine.  The schema is brought up
to date by Alembic when the store opens (a store already at `schema.REVISION`,
nearly every one, is opened without importing Alembic).  Times are stored and returned in UTC.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from rdnsgate.config import StorageSettings
from rdnsgate.errors import StoreUnavailable
from rdnsgate.storage.admins import AdminTables
from rdnsgate.storage.base import create_engine, is_current, shown_url, upgrade
from rdnsgate.storage.changes import ChangeTables
from rdnsgate.storage.decisions import DecisionTables
from rdnsgate.storage.exceptions import ExceptionTables
from rdnsgate.storage.fleet import FleetTables
from rdnsgate.storage.nodes import NodeTables


class SqlStore(ExceptionTables, DecisionTables, FleetTables, AdminTables, NodeTables, ChangeTables):
    def __init__(self, engine: AsyncEngine, settings: StorageSettings) -> None:
        self.engine = engine
        self.settings = settings
        self.postgresql = engine.dialect.name == "postgresql"

    async def migrate(self) -> None:
        async with self.engine.begin() as connection:
            if not await connection.run_sync(is_current):
                await connection.run_sync(upgrade)

    async def close(self) -> None:
        await self.decisions_close()
        await self.engine.dispose()


async def open_store(storage: StorageSettings | str, *, migrate: bool = True) -> SqlStore:
    """Open the store (settings, or only a URL) and bring its schema up to date.

    Raises ConfigError for a URL that cannot be used, StoreUnavailable when
    the database cannot be reached.
    """
    settings = StorageSettings(url=storage) if isinstance(storage, str) else storage
    store = SqlStore(create_engine(settings), settings)
    if migrate:
        try:
            await store.migrate()
        except (OSError, TimeoutError, sa.exc.DBAPIError) as exc:
            await store.close()
            raise StoreUnavailable(f"cannot open the store {shown_url(settings.url)}: {unavailable(exc)}") from exc
    return store


def unavailable(exc: BaseException) -> str:
    """Why the database failed, in one line (the driver's own message, not SQLAlchemy's wrapping)."""
    inner = getattr(exc, "orig", None) or exc
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {text}" if text else type(inner).__name__
