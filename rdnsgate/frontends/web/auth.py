"""Admin logins: the session and CSRF tokens (password hashes are rdnsgate.passwords).

The session is Starlette's signed cookie (itsdangerous, HttpOnly,
SameSite=Lax, Secure when ``web.secure_cookies``); it holds the user name,
a CSRF token and a fingerprint of the password hash, so setting a new
password ends every session made with the old one.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not isinstance(token, str):
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict[str, Any], sent: str | None) -> bool:
    token = session.get("csrf")
    return isinstance(token, str) and isinstance(sent, str) and hmac.compare_digest(token, sent)
