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


class Chase:
    """One question followed across CNAMEs, reply by reply: pure, no I/O.

    `step(reply)` gives the `Lookup` the reply settles, or None when the chain
    leaves the reply's data and `current` must be asked next.  Every way of
    asking (the resolver's coroutine, the audit's callbacks in lookups/bulk.py)
    classifies replies here.
    """

    __slots__ = ("chain", "code", "current", "default_negative_ttl", "max_cnames", "qname", "qtype", "seen", "ttl")

    def __init__(self, qname: str, qtype: str, max_cnames: int = 8, default_negative_ttl: int = 300) -> None:
        self.qname = qname
        self.qtype = qtype
        self.code = TYPES[qtype]
        self.current = qname
        self.chain: list[str] = []
        self.seen = {qname}
        self.ttl = 2**31 - 1
        self.max_cnames = max_cnames
        self.default_negative_ttl = default_negative_ttl

    def failed(self, status: Status, detail: str) -> Lookup:
        """No usable reply (timeout, SERVFAIL, ...): a temporary outcome with its cause."""
        return Lookup(self.qname, self.qtype, status, cnames=tuple(self.chain), detail=detail)

    def too_long(self) -> Lookup:
        return self.failed(Status.ERROR, f"more than {self.max_cnames} CNAMEs")

    def step(self, reply: Reply) -> Lookup | None:
        code = self.code
        answer = reply.answer
        target = self.current
        if len(answer) == 1 and self.qtype != "MX":  # one record of the type asked: the common case, cheaply
            rr = answer[0]
            if rr.rtype == code and rr.name == target and isinstance(rr.data, str):
                ttl = min(self.ttl, rr.ttl)
                return Lookup(self.qname, self.qtype, Status.ANSWER, (rr.data,), (), ttl, tuple(self.chain))
        while True:
            found = [rr for rr in answer if rr.rtype == code and rr.name == target]
            if found:
                break
            alias = next((rr for rr in answer if rr.rtype == TYPE_CNAME and rr.name == target), None)
            if alias is None or not isinstance(alias.data, str):
                break
            self.ttl = min(self.ttl, alias.ttl)
            target = alias.data
            self.chain.append(target)
            if target in self.seen:
                return self.failed(Status.ERROR, f"CNAME loop at {target}")
            if len(self.chain) > self.max_cnames:
                return self.too_long()
            self.seen.add(target)
        if found:
            return self._answer(found, min(self.ttl, min(rr.ttl for rr in found)))
        negative_ttl, zone = _negative(reply)
        if reply.rcode == RCODE_NXDOMAIN:
            return self._negative(Status.NXDOMAIN, negative_ttl, zone)
        if target != self.current and zone is None:
            self.current = target  # the chain leaves this server's data: ask for its end
            return None
        return self._negative(Status.NODATA, negative_ttl, zone)

    def _answer(self, found: list[RR], ttl: int) -> Lookup:
        mx: tuple[MX, ...] = ()
        if self.qtype == "MX":
            mx = tuple(MX(rr.data[0], rr.data[1]) for rr in found if isinstance(rr.data, tuple))
            records = tuple(dict.fromkeys(item.exchange for item in mx))
        elif len(found) == 1 and isinstance(found[0].data, str):
            records = (found[0].data,)
        else:
            records = tuple(dict.fromkeys(rr.data for rr in found if isinstance(rr.data, str)))
        return Lookup(self.qname, self.qtype, Status.ANSWER, records, mx, ttl, tuple(self.chain))

    def _negative(self, status: Status, negative_ttl: int | None, zone: str | None) -> Lookup:
        ttl = negative_ttl if negative_ttl is not None else self.default_negative_ttl
        return Lookup(
            self.qname, self.qtype, status, ttl=ttl, cnames=tuple(self.chain), negative_ttl=negative_ttl, soa_zone=zone
        )


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
        chase = Chase(qname, qtype, self.max_cnames, self.default_negative_ttl)
        for _hop in range(self.max_cnames + 1):
            reply = await self.client.query(chase.current, chase.code, deadline)
            if isinstance(reply, Failure):
                return chase.failed(reply.status, reply.detail)
            outcome = chase.step(reply)
            if outcome is not None:
                return outcome
        return chase.too_long()
