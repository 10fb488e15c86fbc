"""What every table family of the store shares: the engine, URLs and drivers, UTC times, migrations."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rdnsgate.config import StorageSettings
from rdnsgate.errors import ConfigError
from rdnsgate.storage.schema import REVISION

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}
MIGRATION_LOCK = 0x7264_6E73  # "rdns": the advisory lock nodes take so that one of them migrates at a time
CONNECT_SECONDS = 10.0  # to open a PostgreSQL connection
STATEMENT_SECONDS = 60.0  # for any one PostgreSQL statement: a database that hangs becomes an error


class Tables:
    """A table family's queries run on `engine`; SqlStore mixes the families together."""

    engine: AsyncEngine


def async_url(url: str) -> str:
    """The SQLAlchemy async URL for a plain ``sqlite:///`` or ``postgresql://`` URL."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        raise ConfigError(f"storage.url {url!r} is not a database URL (sqlite:///PATH or postgresql://...)") from None
    driver = DRIVERS.get(parsed.drivername)
    if driver is None and "+" not in parsed.drivername:
        raise ConfigError(f"storage.url: unsupported database {parsed.drivername!r} (sqlite or postgresql)")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return str(parsed.set(drivername=driver)) if driver else url


def shown_url(url: str) -> str:
    """`url` without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a database URL)"


def create_engine(settings: StorageSettings) -> AsyncEngine:
    """The engine for `settings.url`: SQLite with WAL, or PostgreSQL with a checked pool of `pool_size`."""
    url = async_url(settings.url)
    if not url.startswith("postgresql"):
        engine = create_async_engine(url)
        sa.event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    connect: dict[str, Any] = {"timeout": CONNECT_SECONDS, "command_timeout": STATEMENT_SECONDS}
    if settings.pgbouncer:
        # pgbouncer in transaction mode hands each transaction to any server connection: no statement cache,
        # and names that cannot clash between clients (SQLAlchemy's asyncpg dialect docs).
        connect |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__rdnsgate_{uuid.uuid4().hex}__",
        }
    return create_async_engine(
        url,
        connect_args=connect,
        pool_size=settings.pool_size,
        max_overflow=0,
        pool_timeout=settings.pool_timeout,
        pool_pre_ping=True,  # a connection the database closed (restart, failover) is replaced, not used
    )


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """What every connection to a SQLite store sets first (the engine's, and the decision writer's)."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=5000")  # first: the WAL switch itself may wait for another process
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: no fsync per commit; safe against crashes
    cursor.close()


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _alembic_config() -> Any:
    from alembic.config import Config  # alembic only when a schema is asked about or changed: ~0.3 s to import

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def newest_revision() -> str | None:
    """The revision `upgrade` brings a store to."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def is_current(connection: sa.Connection) -> bool:
    """Whether the store's schema is at `REVISION`, read without Alembic: every store opens with this, and
    a store already up to date (nearly always) then needs Alembic not even imported."""
    if not sa.inspect(connection).has_table("alembic_version"):
        return False
    versions = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    return versions == [REVISION]


def upgrade(connection: sa.Connection, revision: str = "head") -> None:
    """Bring the schema to `revision` (the newest); on PostgreSQL one node at a time (the others then find it done)."""
    from alembic import command

    if connection.dialect.name == "postgresql":
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK)))
    config = _alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
