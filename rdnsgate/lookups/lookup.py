"""The resolver every check uses: one question in, one `Lookup` value out.

`Resolver.lookup(name, "PTR")` consults the cache, joins an identical
question already in flight, asks the `DnsClient`, follows CNAMEs (also across
zones, as RFC 2317 classless reverse delegation needs) up to `max_cnames`
hops, and classifies the outcome: ANSWER, NXDOMAIN, NODATA (with the
negative TTL from the SOA, RFC 2308) or a temporary status with its cause.
It never raises for a DNS outcome.
"""

from __future__ import annotations

import asyncio

from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.transport import DnsClient, Failure
from rdnsgate.lookups.wire import RCODE_NXDOMAIN, RR, SOA, TYPES, Reply
from rdnsgate.model import MX, Lookup, Status

TYPE_CNAME = TYPES["CNAME"]
TYPE_SOA = TYPES["SOA"]


def _negative(reply: Reply) -> tuple[int | None, str | None]:
    """RFC 2308 §5: the negative TTL is the lesser of the SOA record's TTL and its MINIMUM."""
    for rr in reply.authority:
        if rr.rtype == TYPE_SOA and isinstance(rr.data, SOA):
            return min(rr.ttl, rr.data.minimum), rr.name
    return None, None


class Resolver:
    def __init__(
        self,
        client: DnsClient,
        cache: LookupCache | None = None,
        *,
        max_cnames: int = 8,
        default_negative_ttl: int = 300,
    ) -> None:
        self.client = client
        self.cache = cache
        self.max_cnames = max_cnames
        self.default_negative_ttl = default_negative_ttl
        self._inflight: dict[tuple[str, str], asyncio.Future[Lookup]] = {}
        self.lookups = 0

    async def close(self) -> None:
        await self.client.close()

    async def lookup(self, name: str, qtype: str, deadline: float | None = None) -> Lookup:
        """Resolve `name`/`qtype` (A, AAAA, PTR, MX, NS, SOA, CNAME)."""
        qname = name.lower()
        if qname.endswith(".") and not qname.endswith("\\."):
            qname = qname[:-1]
        key = (qname, qtype)
        self.lookups += 1
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
        while (pending := self._inflight.get(key)) is not None:
            # The same question is on the wire already: share its answer.
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The asker we were waiting for was cancelled: ask ourselves.
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._resolve(qname, qtype, deadline)
        except BaseException:
            future.cancel()
            raise
        finally:
            del self._inflight[key]
        future.set_result(result)
        if self.cache is not None:
            self.cache.put(key, result)
        return result

    async def _resolve(self, qname: str, qtype: str, deadline: float | None) -> Lookup:
        code = TYPES[qtype]
        chain: list[str] = []
        seen = {qname}
        ttl = 2**31 - 1
        current = qname
        for _hop in range(self.max_cnames + 1):
            reply = await self.client.query(current, code, deadline)
            if isinstance(reply, Failure):
                return Lookup(qname, qtype, reply.status, cnames=tuple(chain), detail=reply.detail)
            target = current
            found = []
            while True:
                found = [rr for rr in reply.answer if rr.rtype == code and rr.name == target]
                if found:
                    break
                alias = next((rr for rr in reply.answer if rr.rtype == TYPE_CNAME and rr.name == target), None)
                if alias is None or not isinstance(alias.data, str):
                    break
                ttl = min(ttl, alias.ttl)
                target = alias.data
                chain.append(target)
                if target in seen:
                    return Lookup(qname, qtype, Status.ERROR, cnames=tuple(chain), detail=f"CNAME loop at {target}")
                if len(chain) > self.max_cnames:
                    return Lookup(
                        qname, qtype, Status.ERROR, cnames=tuple(chain), detail=f"more than {self.max_cnames} CNAMEs"
                    )
                seen.add(target)
            if found:
                return self._answer(qname, qtype, found, min(ttl, min(rr.ttl for rr in found)), chain)
            negative_ttl, zone = _negative(reply)
            if reply.rcode == RCODE_NXDOMAIN:
                return self._negative(qname, qtype, Status.NXDOMAIN, negative_ttl, zone, chain)
            if target != current and zone is None:
                current = target  # the chain leaves this server's data: ask for its end
                continue
            return self._negative(qname, qtype, Status.NODATA, negative_ttl, zone, chain)
        return Lookup(qname, qtype, Status.ERROR, cnames=tuple(chain), detail=f"more than {self.max_cnames} CNAMEs")

    def _answer(self, qname: str, qtype: str, found: list[RR], ttl: int, chain: list[str]) -> Lookup:
        mx: tuple[MX, ...] = ()
        if qtype == "MX":
            mx = tuple(MX(rr.data[0], rr.data[1]) for rr in found if isinstance(rr.data, tuple))
            records = tuple(dict.fromkeys(item.exchange for item in mx))
        elif len(found) == 1 and isinstance(found[0].data, str):
            records = (found[0].data,)
        else:
            records = tuple(dict.fromkeys(rr.data for rr in found if isinstance(rr.data, str)))
        return Lookup(qname, qtype, Status.ANSWER, records, mx, ttl, tuple(chain))

    def _negative(
        self, qname: str, qtype: str, status: Status, negative_ttl: int | None, zone: str | None, chain: list[str]
    ) -> Lookup:
        ttl = negative_ttl if negative_ttl is not None else self.default_negative_ttl
        return Lookup(qname, qtype, status, ttl=ttl, cnames=tuple(chain), negative_ttl=negative_ttl, soa_zone=zone)
