"""Whitelist matching: pure functions on entries, an address, a sender domain and the time.

Entries come from storage (`rdnsgate whitelist add`); this module only parses
what an admin typed and says which entry, if any, lets a client skip the checks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from rdnsgate.checks.names import is_fqdn, to_ascii_domain
from rdnsgate.config import parse_moment
from rdnsgate.errors import UsageError
from rdnsgate.model import IPAddress, WhitelistEntry, iso


def parse_target(text: str) -> tuple[str, str]:
    """("network", "198.51.100.0/24") for an IP or CIDR, ("domain", "example.org") for a domain."""
    value = text.strip()
    try:
        network = ipaddress.ip_network(value, strict=False)
    except ValueError:
        pass
    else:
        if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == 128 and network[0].ipv4_mapped:
            network = ipaddress.ip_network(f"{network[0].ipv4_mapped}/32")
        return "network", str(network)
    try:
        domain = to_ascii_domain(value.removeprefix("@"))
    except ValueError as exc:
        raise UsageError(f"{text!r}: {exc}") from None
    if not is_fqdn(domain):
        raise UsageError(f"{text!r} is neither an IP address, a network (CIDR) nor a domain name")
    return "domain", domain


def parse_expiry(text: str | None, now: datetime) -> datetime | None:
    """ "30d", "12h", "90m", "2w" or an ISO date/time (UTC when no zone is given); None: never."""
    if text is None or text.strip().lower() in ("", "never"):
        return None
    moment = parse_moment(text, now, ago=False)
    if moment <= now:
        raise UsageError(f"expiry {text!r} is in the past")
    return moment


def is_active(entry: WhitelistEntry, now: datetime) -> bool:
    return entry.expires_at is None or entry.expires_at > now


def match(
    entries: Iterable[WhitelistEntry], ip: IPAddress, sender_domain: str | None, now: datetime
) -> WhitelistEntry | None:
    """The first active entry covering `ip` or naming exactly `sender_domain`.

    A sender domain is only what the client claims in MAIL FROM: anyone can
    claim it, so domain entries match exactly, never subdomains; prefer IPs.
    """
    for entry in entries:
        if not is_active(entry, now):
            continue
        if entry.kind == "network":
            network = ipaddress.ip_network(entry.value)
            if ip.version == network.version and ip in network:
                return entry
        elif sender_domain is not None and sender_domain == entry.value:
            return entry
    return None


def entry_dict(entry: WhitelistEntry) -> dict[str, Any]:
    """An entry as JSON values (`rdnsgate whitelist list --json`, ``/api/v1/whitelist``)."""
    return {
        "id": entry.id,
        "kind": entry.kind,
        "value": entry.value,
        "reason": entry.reason,
        "ticket": entry.ticket,
        "created_at": iso(entry.created_at),
        "expires_at": iso(entry.expires_at),
        "changed_by": entry.changed_by,
        "changed_at": iso(entry.changed_at),
    }
