"""Canary names (``dns.canaries``): names that must exist, asked at the nameservers without the cache.

The resolver guard (runtime.py, lookups/health.py) asks them every
``dns.canary_interval`` seconds; ``rdnsgate config check`` asks them once.
"""

from __future__ import annotations

import asyncio

from rdnsgate.config import DnsSettings
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.transport import Failure
from rdnsgate.lookups.wire import RCODE_NXDOMAIN, TYPES

MISSING = "does not exist (NXDOMAIN)"


def canaries_of(dns: DnsSettings, hostname: str) -> tuple[str, ...]:
    """The canary names: ``@hostname`` is this host's name, ``.`` the root; each once."""
    names = (hostname if name == "@hostname" else name for name in dns.canaries)
    return tuple(dict.fromkeys(name if name == "." else name.rstrip(".").lower() for name in names if name))


async def canary_problem(resolver: Resolver, name: str, seconds: float = 10.0) -> str | None:
    """Ask one canary (the root: SOA; any other name: A): None when it answers as a name that exists must."""
    deadline = asyncio.get_running_loop().time() + seconds
    outcome = await resolver.client.query(name if name != "." else "", TYPES["SOA" if name == "." else "A"], deadline)
    if isinstance(outcome, Failure):
        return f"could not be resolved ({outcome.status.value}: {outcome.detail})"
    if outcome.rcode == RCODE_NXDOMAIN:
        return MISSING
    return None
