"""Pure: who may do what (roles), API tokens, and how a change's author is named.

Two roles, for web users and API tokens alike: ``helpdesk`` may read the
decision log and manage the whitelist; ``admin`` may do everything (the
fleet, and the helpdesk's work).  A token is ``rdg_`` and 43 URL-safe
characters (256 random bits); the store keeps only its SHA-256, which is
enough for a secret that long (no password-style slow hash needed).
"""

from __future__ import annotations

import getpass
import hashlib
import secrets
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    HELPDESK = "helpdesk"


class Permission(StrEnum):
    DECISIONS_READ = "decisions:read"
    WHITELIST_READ = "whitelist:read"
    WHITELIST_WRITE = "whitelist:write"
    FLEET_READ = "fleet:read"
    FLEET_WRITE = "fleet:write"


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.HELPDESK: frozenset({Permission.DECISIONS_READ, Permission.WHITELIST_READ, Permission.WHITELIST_WRITE}),
}
TOKEN_PREFIX = "rdg_"


def parse_role(value: str) -> Role:
    try:
        return Role(value.strip().lower())
    except ValueError:
        raise ValueError(f"role {value!r}: want one of {', '.join(Role)}") from None


def may(role: str, permission: Permission) -> bool:
    """Whether `role` (as stored; an unknown one may nothing) grants `permission`."""
    try:
        return permission in GRANTS[Role(role)]
    except ValueError:
        return False


def new_token() -> tuple[str, str]:
    """A new API token and the hash to store."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    return token, token_hash(token)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def check_name(value: str, what: str) -> str:
    """A user or token name: 1 to 64 characters, no spaces or control characters."""
    if not value or len(value) > 64 or any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ValueError(f"{what}: 1 to 64 characters, no spaces")
    return value


def web_actor(user: str) -> str:
    return f"web:{user}"


def token_actor(name: str) -> str:
    return f"token:{name}"


def cli_actor() -> str:
    """The CLI's user as the author of a change (the login name; the uid when there is none)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        import os

        return f"cli:uid {os.getuid()}"
