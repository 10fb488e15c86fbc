"""Admin logins of the web app, and the secrets the app keeps (its session key)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa

from rdnsgate.storage.base import Tables
from rdnsgate.storage.schema import admins, app_secrets


class AdminTables(Tables):
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
