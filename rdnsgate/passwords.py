"""Admin passwords: argon2id hashes (the CLI sets them, the web app checks them).

`fingerprint` is a short digest of a stored hash: the web session keeps it,
so setting a new password ends every session made with the old one.
"""

from __future__ import annotations

import hashlib

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASHER = PasswordHasher()
_DUMMY = HASHER.hash("a password nobody has")  # so unknown users cost as much as known ones
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters")
    return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def fingerprint(stored: str) -> str:
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
