"""Pure: the signed link of a refusal, and whether its sender may ask for a temporary exception.

Every refusal that links to the check page carries a token: the time, the
failing check and a random id, signed with HMAC-SHA256 over those and the
client IP (the key is a secret every node shares, kept in the store).  The
token proves that this IP was refused for that check at that time; it is
good for ``exceptions.link_hours`` (48) and only for its IP.  Without one, or
with a forged or expired one, the page still explains, but offers nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from rdnsgate.config import ExceptionSettings

SIGNATURE_BYTES = 12  # 96 bits: enough against forgery, short enough to keep the reply within 512 bytes
NEVER = frozenset({"null-mx"})  # reasons never excepted: the domain itself says it sends no mail


@dataclass(frozen=True, slots=True)
class LinkClaim:
    """What a valid token says: `ip` was refused for `check` at `at` (Unix time); `id` names the refusal."""

    ip: str
    check: str
    at: int
    id: str


class LinkSigner:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def _mac(self, ip: str, check: str, at: int, nonce: str) -> str:
        digest = hmac.new(self.key, f"{ip}|{check}|{at}|{nonce}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:SIGNATURE_BYTES]).decode().rstrip("=")

    def sign(self, ip: str, check: str, at: int, nonce: str | None = None) -> str:
        """``AT.CHECK.ID.MAC``: URL-safe as it is."""
        nonce = nonce or secrets.token_urlsafe(6)
        return f"{at}.{check}.{nonce}.{self._mac(ip, check, at, nonce)}"

    def verify(self, token: str, ip: str, now: float, hours: float) -> LinkClaim | None:
        """The claim of a token signed for `ip` and at most `hours` old; None for anything else."""
        parts = token.strip().split(".")
        if len(parts) != 4 or not parts[0].isdigit() or len(token) > 200:
            return None
        at, check, nonce, mac = int(parts[0]), parts[1], parts[2], parts[3]
        if not hmac.compare_digest(mac, self._mac(ip, check, at, nonce)):
            return None
        if not (at - 300 <= now <= at + hours * 3600):  # five minutes of clock difference between nodes
            return None
        return LinkClaim(ip, check, at, nonce)


def refusal_of(claim: LinkClaim, settings: ExceptionSettings, reason: str | None, recent: int) -> str | None:
    """Why this refused sender may not ask for an exception now (None: it may). `reason` is the check's
    reason now, when known; `recent` counts its exceptions (granted or waiting) within `per_ip_days`."""
    if settings.mode == "off":
        return "self-service exceptions are off here: ask the postmaster"
    if claim.check not in settings.checks:
        return f"a failing {claim.check} check cannot be excepted here: fix it, or ask the postmaster"
    if reason in NEVER:
        return "the sender domain publishes a null MX: it says itself that it sends no mail; that is not excepted"
    if recent >= settings.per_ip:
        return (
            f"{claim.ip} had an exception (or asked for one) in the last {settings.per_ip_days:g} days: "
            "fix the DNS, or ask the postmaster"
        )
    return None
