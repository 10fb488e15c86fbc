"""The store: whitelist and decision log through SQLAlchemy Core (async).

One implementation for SQLite (``sqlite:///var/rdnsgate.db``, the embedded
default, through aiosqlite with WAL so the CLI and a running gateway can share
the file) and PostgreSQL (``postgresql://...``, through asyncpg, for several
nodes).  The schema is brought up to date by Alembic when the store opens.
Times are stored and returned in UTC.
"""

from __future__ import annotations

import importlib.util
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rdnsgate.errors import ConfigError
from rdnsgate.model import DecisionRecord, FleetEntry, WhitelistEntry
from rdnsgate.storage.schema import admins, alerts, app_secrets, decisions, fleet, fleet_checks, whitelist

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg", "postgres": "postgresql+asyncpg"}


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


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _upgrade(connection: sa.Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class FleetStore:
    """The fleet's rows; mixed into SqlStore."""

    engine: AsyncEngine

    async def fleet_add(self, entry: FleetEntry) -> tuple[FleetEntry, bool]:
        """Watch `entry.ip`, or update its HELO and label when it is watched already; True when new."""
        async with self.engine.begin() as connection:
            existing = (await connection.execute(sa.select(fleet.c.id).where(fleet.c.ip == entry.ip))).scalar()
            if existing is None:
                await connection.execute(
                    fleet.insert().values(
                        ip=entry.ip,
                        helo=entry.helo,
                        label=entry.label,
                        state="unknown",
                        since=_utc(entry.since) or datetime.now(UTC),
                    )
                )
            else:
                await connection.execute(
                    fleet.update().where(fleet.c.id == existing).values(helo=entry.helo, label=entry.label)
                )
            row = (await connection.execute(sa.select(fleet).where(fleet.c.ip == entry.ip))).mappings().one()
        return _fleet_entry(dict(row)), existing is None

    async def fleet_list(self) -> list[FleetEntry]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(sa.select(fleet).order_by(fleet.c.id))).mappings().all()
        return [_fleet_entry(dict(row)) for row in rows]

    async def fleet_remove(self, ip: str) -> int:
        async with self.engine.begin() as connection:
            entry_id = (await connection.execute(sa.select(fleet.c.id).where(fleet.c.ip == ip))).scalar()
            if entry_id is None:
                return 0
            await connection.execute(alerts.delete().where(alerts.c.fleet_id == entry_id))
            await connection.execute(fleet_checks.delete().where(fleet_checks.c.fleet_id == entry_id))
            await connection.execute(fleet.delete().where(fleet.c.id == entry_id))
        return 1

    async def fleet_record(
        self, entry: FleetEntry, at: datetime, seen: str, detail: str, alert: tuple[str, str] | None
    ) -> None:
        """Store one check of `entry` (already carrying its new state), and its alert if any."""
        assert entry.id is not None
        async with self.engine.begin() as connection:
            updated = await connection.execute(
                fleet.update()
                .where(fleet.c.id == entry.id)
                .values(**_tracker_values(entry), last_checked=_utc(at), last_chain=entry.last_chain)
            )
            if not updated.rowcount:  # removed while it was being checked
                return
            await connection.execute(
                fleet_checks.insert().values(
                    fleet_id=entry.id,
                    at=_utc(at),
                    seen=seen,
                    state=entry.state,
                    chain=entry.last_chain or {},
                    detail=detail,
                )
            )
            if alert is not None:
                await connection.execute(
                    alerts.insert().values(
                        fleet_id=entry.id, at=_utc(at), before=alert[0], after=alert[1], detail=detail
                    )
                )

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
            row["at"] = _utc(row["at"])
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
            row["at"] = _utc(row["at"])
        return rows


def _tracker_values(entry: FleetEntry) -> dict[str, Any]:
    """The monitor's state of `entry` as column values."""
    return {
        "state": entry.state,
        "since": _utc(entry.since),
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
        since=_utc(row["since"]),
        last_good=row["last_good"],
        candidate=row["candidate"],
        candidate_count=row["candidate_count"],
        last_checked=_utc(row["last_checked"]),
        last_chain=row["last_chain"],
        id=row["id"],
    )


class SqlStore(FleetStore):
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def migrate(self) -> None:
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    # -- admin logins and the signing key ------------------------------------------------
    async def admin_set_password(self, username: str, password_hash: str) -> bool:
        """Store `username`'s password hash; True when the user is new."""
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            found = (
                await connection.execute(sa.select(admins.c.username).where(admins.c.username == username))
            ).scalar()
            if found is None:
                await connection.execute(
                    admins.insert().values(username=username, password_hash=password_hash, updated_at=now)
                )
            else:
                await connection.execute(
                    admins.update()
                    .where(admins.c.username == username)
                    .values(password_hash=password_hash, updated_at=now)
                )
        return found is None

    async def admin_password_hash(self, username: str) -> str | None:
        async with self.engine.connect() as connection:
            return (
                await connection.execute(sa.select(admins.c.password_hash).where(admins.c.username == username))
            ).scalar()

    async def admin_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(sa.select(sa.func.count()).select_from(admins))).scalar() or 0)

    async def secret(self, name: str) -> str:
        """The secret called `name`, made (random, 256 bits) and kept on first use, so every node shares it."""
        async with self.engine.begin() as connection:
            value = (
                await connection.execute(sa.select(app_secrets.c.value).where(app_secrets.c.name == name))
            ).scalar()
            if value is not None:
                return str(value)
            value = secrets.token_urlsafe(32)
            try:
                async with connection.begin_nested():
                    await connection.execute(app_secrets.insert().values(name=name, value=value))
            except sa.exc.IntegrityError:  # another node made it first
                value = (
                    await connection.execute(sa.select(app_secrets.c.value).where(app_secrets.c.name == name))
                ).scalar_one()
            return str(value)

    # -- whitelist ---------------------------------------------------------------------
    async def whitelist_add(self, entry: WhitelistEntry) -> tuple[WhitelistEntry, bool]:
        """Add `entry`, or update the entry for the same IP/network/domain; True when it is new."""
        created = _utc(entry.created_at) or datetime.now(UTC)
        values = {"reason": entry.reason, "ticket": entry.ticket, "expires_at": _utc(entry.expires_at)}
        async with self.engine.begin() as connection:
            existing = (
                await connection.execute(
                    sa.select(whitelist.c.id).where(whitelist.c.kind == entry.kind, whitelist.c.value == entry.value)
                )
            ).scalar_one_or_none()
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

    async def whitelist_remove(self, kind: str, value: str) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                whitelist.delete().where(whitelist.c.kind == kind, whitelist.c.value == value)
            )
        return int(result.rowcount or 0)

    async def whitelist_remove_id(self, entry_id: int) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(whitelist.delete().where(whitelist.c.id == entry_id))
        return int(result.rowcount or 0)

    @staticmethod
    def _entry(row: dict[str, Any]) -> WhitelistEntry:
        return WhitelistEntry(
            kind=row["kind"],
            value=row["value"],
            reason=row["reason"],
            ticket=row["ticket"],
            created_at=_utc(row["created_at"]),
            expires_at=_utc(row["expires_at"]),
            id=row["id"],
        )

    # -- decision log ------------------------------------------------------------------------
    async def decisions_add(self, records: Sequence[DecisionRecord]) -> None:
        if not records:
            return
        rows = [
            {
                "at": _utc(item.at),
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
                at=_utc(row["at"]) or datetime.now(UTC),
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
