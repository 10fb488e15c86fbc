"""Web logins and API tokens with their roles, and the secrets the app keeps (its session key)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.schema import admins, api_tokens, app_secrets


class AdminTables(Tables):
    async def admin_set_password(self, username: str, password_hash: str, role: str | None = None) -> bool:
        """Store `username`'s password hash (and `role`, when given: a new user without one is an admin);
        True when the user is new."""
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            found = (
                await connection.execute(sa.select(admins.c.username).where(admins.c.username == username))
            ).scalar()
            values: dict[str, Any] = {"password_hash": password_hash, "updated_at": now}
            if role is not None:
                values["role"] = role
            if found is None:
                await connection.execute(admins.insert().values(username=username, **values))
            else:
                await connection.execute(admins.update().where(admins.c.username == username).values(**values))
        return found is None

    async def admin_login(self, username: str) -> tuple[str, str] | None:
        """`username`'s password hash and role, or None when there is no such user."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(admins.c.password_hash, admins.c.role).where(admins.c.username == username)
                )
            ).first()
        return None if row is None else (row.password_hash, row.role)

    async def admin_password_hash(self, username: str) -> str | None:
        login = await self.admin_login(username)
        return None if login is None else login[0]

    async def admin_list(self) -> list[dict[str, Any]]:
        """Every web user: name, role, when the password was set."""
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    sa.select(admins.c.username, admins.c.role, admins.c.updated_at).order_by(admins.c.username)
                )
            ).all()
        return [{"username": row.username, "role": row.role, "updated_at": utc(row.updated_at)} for row in rows]

    async def admin_remove(self, username: str) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(admins.delete().where(admins.c.username == username))
        return int(result.rowcount or 0)

    async def admin_count(self) -> int:
        async with self.engine.connect() as connection:
            return int((await connection.execute(sa.select(sa.func.count()).select_from(admins))).scalar() or 0)

    # -- API tokens: only a SHA-256 of each is stored (a random 256-bit token needs no slow hash) --
    async def token_add(self, name: str, role: str, token_hash: str, created_by: str) -> bool:
        """Store a new token; False when a token of that name exists already."""
        async with self.engine.begin() as connection:
            try:
                async with connection.begin_nested():
                    await connection.execute(
                        api_tokens.insert().values(
                            name=name,
                            role=role,
                            token_hash=token_hash,
                            created_at=datetime.now(UTC),
                            created_by=created_by,
                        )
                    )
            except sa.exc.IntegrityError:
                return False
        return True

    async def token_find(self, token_hash: str, now: datetime | None = None) -> tuple[str, str] | None:
        """The (name, role) of the token with this hash, its use noted (at most once a minute); None if unknown."""
        now = now or datetime.now(UTC)
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    sa.select(api_tokens.c.id, api_tokens.c.name, api_tokens.c.role, api_tokens.c.last_used_at).where(
                        api_tokens.c.token_hash == token_hash
                    )
                )
            ).first()
        if row is None:
            return None
        last = utc(row.last_used_at)
        if last is None or (now - last).total_seconds() >= 60:
            async with self.engine.begin() as connection:
                await connection.execute(api_tokens.update().where(api_tokens.c.id == row.id).values(last_used_at=now))
        return row.name, row.role

    async def token_list(self) -> list[dict[str, Any]]:
        async with self.engine.connect() as connection:
            rows = (await connection.execute(sa.select(api_tokens).order_by(api_tokens.c.name))).mappings().all()
        return [
            {
                "name": row["name"],
                "role": row["role"],
                "created_at": utc(row["created_at"]),
                "created_by": row["created_by"],
                "last_used_at": utc(row["last_used_at"]),
            }
            for row in rows
        ]

    async def token_remove(self, name: str) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(api_tokens.delete().where(api_tokens.c.name == name))
        return int(result.rowcount or 0)

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
