"""The DNS data each check needs, fetched concurrently under one deadline.

These functions know which questions a check asks, not what the answers
mean: `checks/` decides that.  Each returns `Lookup` values and never raises
for a DNS outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from rdnsgate.lookups.lookup import Resolver
from rdnsgate.model import Lookup, Status


async def lookup_all(
    resolver: Resolver, names: Iterable[str], qtype: str, deadline: float | None = None
) -> dict[str, Lookup]:
    """`qtype` of every name at once: {name: Lookup}."""
    names = list(names)
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: await resolver.lookup(names[0], qtype, deadline)}
    results = await asyncio.gather(*(resolver.lookup(name, qtype, deadline) for name in names))
    return dict(zip(names, results, strict=True))


async def host_lookups(
    resolver: Resolver, name: str, deadline: float | None = None
) -> tuple[Lookup, Lookup, Lookup | None]:
    """A and AAAA of a host name; MX too, only when both say NODATA (the HELO check)."""
    a, aaaa = await asyncio.gather(resolver.lookup(name, "A", deadline), resolver.lookup(name, "AAAA", deadline))
    mx = None
    if a.status is Status.NODATA and aaaa.status is Status.NODATA:
        mx = await resolver.lookup(name, "MX", deadline)
    return a, aaaa, mx


async def mail_lookups(
    resolver: Resolver, domain: str, deadline: float | None = None
) -> tuple[Lookup, Lookup | None, Lookup | None]:
    """MX of a mail domain; A and AAAA only when there is no MX (RFC 5321 §5.1 fallback)."""
    mx = await resolver.lookup(domain, "MX", deadline)
    if mx.status is not Status.NODATA:
        return mx, None, None
    a, aaaa = await asyncio.gather(resolver.lookup(domain, "A", deadline), resolver.lookup(domain, "AAAA", deadline))
    return mx, a, aaaa
