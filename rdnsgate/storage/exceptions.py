"""Self-service exception requests: asked from a refusal's link, granted or refused by the helpdesk (or at once)."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from rdnsgate.model import WhitelistEntry
from rdnsgate.storage.base import Tables, utc
from rdnsgate.storage.changes import log_change
from rdnsgate.storage.schema import exception_requests as requests
from rdnsgate.storage.whitelist import WhitelistTables

ACTOR = "self-service"


class ExceptionTables(WhitelistTables, Tables):
    async def exception_recent(self, ip: str, since: datetime) -> int:
        """Requests of `ip` since `since` that were granted or still wait (a refused one does not count)."""
        query = (
            sa.select(sa.func.count())
            .select_from(requests)
            .where(requests.c.ip == ip, requests.c.at >= utc(since), requests.c.state != "refused")
        )
        async with self.engine.connect() as connection:
            return int((await connection.execute(query)).scalar() or 0)

    async def exception_refusal_used(self, refusal: str) -> bool:
        async with self.engine.connect() as connection:
            found = await connection.execute(sa.select(requests.c.id).where(requests.c.refusal == refusal))
            return found.first() is not None

    async def exception_request(self, ip: str, check: str, refusal: str, message: str, visitor: str) -> dict[str, Any]:
        """Record a waiting request; the row."""
        now = datetime.now(UTC)
        values = {
            "at": now,
            "ip": ip,
            "check_name": check,
            "refusal": refusal,
            "message": message[:2000],
            "visitor": visitor[:45],
            "state": "pending",
        }
        async with self.engine.begin() as connection:
            result = await connection.execute(requests.insert().values(**values))
            await log_change(connection, ACTOR, "exception", "request", ip, f"{check} [{refusal}]: {message[:300]}")
            new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        return {**values, "id": new_id}

    async def exception_list(self, state: str | None = "pending", limit: int = 100) -> list[dict[str, Any]]:
        query = sa.select(requests).order_by(requests.c.at.desc()).limit(limit)
        if state is not None:
            query = query.where(requests.c.state == state)
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query)).mappings().all()
        return [
            {
                **dict(row),
                "at": utc(row["at"]),
                "decided_at": utc(row["decided_at"]),
                "expires_at": utc(row["expires_at"]),
            }
            for row in rows
        ]

    async def exception_decide(self, request_id: int, grant: bool, actor: str, days: float) -> dict[str, Any] | None:
        """Grant (a whitelist entry for the IP, expiring in `days`) or refuse a waiting request; the row as it
        is now, or None when there is no waiting request of that id."""
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            row = (
                (
                    await connection.execute(
                        sa.select(requests).where(requests.c.id == request_id, requests.c.state == "pending")
                    )
                )
                .mappings()
                .first()
            )
            if row is None:
                return None
            expires = now + timedelta(days=days) if grant else None
            await connection.execute(
                requests.update()
                .where(requests.c.id == request_id)
                .values(state="granted" if grant else "refused", decided_by=actor, decided_at=now, expires_at=expires)
            )
            await log_change(
                connection, actor, "exception", "grant" if grant else "refuse", row["ip"], f"request #{request_id}"
            )
            if grant:  # the grant and its entry are one change: neither is kept without the other
                entry = self.exception_entry(row["ip"], row["check_name"], row["refusal"], now, expires)
                await self.whitelist_add_in(connection, entry, actor)
        return {**dict(row), "state": "granted" if grant else "refused", "decided_by": actor, "expires_at": expires}

    async def exception_grant_now(
        self, ip: str, check: str, refusal: str, message: str, visitor: str, days: float
    ) -> datetime:
        """`exceptions.mode = auto`: record the request as granted and add the whitelist entry at once; its expiry."""
        made = await self.exception_request(ip, check, refusal, message, visitor)
        decided = await self.exception_decide(int(made["id"]), True, ACTOR, days)
        assert decided is not None and decided["expires_at"] is not None
        return decided["expires_at"]  # type: ignore[no-any-return]

    @staticmethod
    def exception_entry(ip: str, check: str, refusal: str, now: datetime, expires: datetime | None) -> WhitelistEntry:
        """The entry for the one address of a request (stored as the check page's verified link named it:
        an address as `checks.names.parse_ip` writes it, IPv4-mapped ones as IPv4), as a /32 or /128."""
        return WhitelistEntry(
            "network", str(ipaddress.ip_network(ip)), f"self-service: {check} fails", refusal, now, expires
        )
