"""Asking a name's own zone servers, past every cache: "is it fixed at the source?".

`AuthorityLookups.lookup(name, qtype)` finds the zone that holds `name` (the
SOA owner in the resolver's answer), that zone's NS names and their
addresses (through the normal resolver), then asks those servers directly,
without a cache.  It runs no check: `policy.evaluate.Engine.iprev_at_source`
asks it for the iprev chain's answers.
"""

from __future__ import annotations

import asyncio

from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.transport import DnsClient, Nameserver
from rdnsgate.model import Lookup, Status


class AuthorityLookups:
    def __init__(self, resolver: Resolver, *, port: int = 53, timeout: float = 2.0, tries: int = 2) -> None:
        self.resolver = resolver
        self.port = port
        self.timeout = timeout
        self.tries = tries
        self._clients: dict[tuple[Nameserver, ...], Resolver] = {}

    async def close(self) -> None:
        for resolver in self._clients.values():
            await resolver.close()
        self._clients.clear()

    async def zone_of(self, name: str) -> str | None:
        """The zone holding `name`, from the SOA in the resolver's answer; None if unknown."""
        soa = await self.resolver.lookup(name, "SOA")
        if soa.status is Status.ANSWER and not soa.cnames:
            return soa.qname
        return soa.soa_zone.rstrip(".").lower() if soa.soa_zone else None

    async def servers_of(self, zone: str) -> list[Nameserver]:
        ns = await self.resolver.lookup(zone, "NS")
        if ns.status is not Status.ANSWER:
            return []
        found = await asyncio.gather(
            *(self.resolver.lookup(name, qtype) for name in ns.records for qtype in ("A", "AAAA"))
        )
        addresses = dict.fromkeys(
            address for lookup in found if lookup.status is Status.ANSWER for address in lookup.records
        )
        return [Nameserver(address, self.port) for address in addresses]

    async def lookup(self, name: str, qtype: str) -> Lookup:
        """`name`/`qtype` as the zone's own servers answer it now."""
        zone = await self.zone_of(name)
        if zone is None:
            return Lookup(name, qtype, Status.ERROR, detail="the zone holding this name was not found")
        servers = await self.servers_of(zone)
        if not servers:
            return Lookup(name, qtype, Status.ERROR, detail=f"no addresses for the name servers of {zone}")
        key = tuple(servers)
        resolver = self._clients.get(key)
        if resolver is None:
            client = DnsClient(list(servers), timeout=self.timeout, tries=self.tries)
            resolver = self._clients[key] = Resolver(client, None, max_cnames=self.resolver.max_cnames)
        return await resolver.lookup(name, qtype)
