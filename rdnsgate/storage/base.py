"""What every table family of the store shares: the engine, URLs and drivers, UTC times, migrations."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from rdnsgate.errors import ConfigError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


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
    if driver == "postgresql+asyncpg" and importlib.util.find_spec("asyncpg") is None:
        raise ConfigError("storage.url: PostgreSQL needs the asyncpg driver (pip install asyncpg)")
    if parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return str(parsed.set(drivername=driver)) if driver else url


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def upgrade(connection: sa.Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
