"""The DNS layer against real servers: knotd, the fault responder, and a port where nobody listens."""

from __future__ import annotations

import asyncio
import time

import pytest

from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.nameservers import parse_nameserver
from rdnsgate.lookups.transport import DnsClient
from rdnsgate.model import Status
from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer, free_port


def resolver_for(*servers: str, cache: LookupCache | None = None, **client: float) -> Resolver:
    options = {"timeout": 0.3, "tries": 3, **client}
    return Resolver(DnsClient([parse_nameserver(s) for s in servers], **options), cache)  # type: ignore[arg-type]


async def test_answers_nxdomain_nodata_with_negative_ttl(knot: KnotServer) -> None:
    resolver = resolver_for(knot.nameserver)
    try:
        found = await resolver.lookup("Mail.Example.ORG.", "A")
        assert (found.status, found.records, found.ttl) == (Status.ANSWER, ("192.0.2.1",), 3600)
        missing = await resolver.lookup("nothing.example.org", "A")
        assert (missing.status, missing.negative_ttl, missing.soa_zone) == (Status.NXDOMAIN, 300, "example.org")
        nodata = await resolver.lookup("mail.example.org", "AAAA")
        assert nodata.status is Status.NODATA and nodata.negative_ttl == 300
        mx = await resolver.lookup("nullmx.example.org", "MX")
        assert [(item.preference, item.exchange) for item in mx.mx] == [(0, "")]
    finally:
        await resolver.close()


async def test_retry_after_a_lost_reply(faults: FaultResponder) -> None:
    faults.add("mail.example.org", "A", Fault.DROP_FIRST)
    resolver = resolver_for(faults.nameserver, timeout=0.2)
    try:
        started = time.monotonic()
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.ANSWER
        assert faults.asked("mail.example.org", "A") == 2
        assert time.monotonic() - started >= 0.15  # it waited for the first try to expire
        assert resolver.client.stats.timeouts == 1
    finally:
        await resolver.close()


async def test_timeout_gives_up_after_the_tries(faults: FaultResponder) -> None:
    faults.add("mail.example.org", "A", Fault.TIMEOUT)
    resolver = resolver_for(faults.nameserver, timeout=0.1, tries=3)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.TIMEOUT and "no reply" in found.detail
        assert faults.asked("mail.example.org", "A") == 3
    finally:
        await resolver.close()


async def test_deadline_cuts_the_retries_short(faults: FaultResponder) -> None:
    faults.add("mail.example.org", "A", Fault.TIMEOUT)
    resolver = resolver_for(faults.nameserver, timeout=1.0, tries=5)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await resolver.lookup("mail.example.org", "A", deadline=started + 0.3)
        assert found.status is Status.TIMEOUT
        assert loop.time() - started < 0.8
    finally:
        await resolver.close()


async def test_in_flight_bound_holds(faults: FaultResponder) -> None:
    resolver = resolver_for(faults.nameserver, max_inflight=5)
    try:
        names = [f"n{i}.big24.example.org" for i in range(60)]
        results = await asyncio.gather(*(resolver.lookup(name, "A") for name in names))
        assert all(item.status is Status.ANSWER for item in results)
        assert resolver.client.stats.peak_inflight == 5
        assert resolver.client.inflight == 0
    finally:
        await resolver.close()


async def test_identical_questions_share_one_query(faults: FaultResponder) -> None:
    resolver = resolver_for(faults.nameserver)
    try:
        results = await asyncio.gather(*(resolver.lookup("mail.example.org", "A") for _ in range(20)))
        assert {item.records for item in results} == {("192.0.2.1",)}
        assert faults.asked("mail.example.org", "A") == 1
    finally:
        await resolver.close()


async def test_cache_serves_answers_and_negative_answers(faults: FaultResponder) -> None:
    resolver = resolver_for(faults.nameserver, cache=LookupCache(100))
    try:
        for _ in range(3):
            assert (await resolver.lookup("mail.example.org", "A")).status is Status.ANSWER
            assert (await resolver.lookup("gone.example.org", "A")).status is Status.NXDOMAIN
        assert faults.asked("mail.example.org", "A") == 1
        assert faults.asked("gone.example.org", "A") == 1
        assert resolver.cache is not None and resolver.cache.hits == 4
    finally:
        await resolver.close()


async def test_temporary_errors_are_not_cached(faults: FaultResponder) -> None:
    faults.add("mail.example.org", "A", Fault.SERVFAIL)
    resolver = resolver_for(faults.nameserver, cache=LookupCache(100))
    try:
        assert (await resolver.lookup("mail.example.org", "A")).status is Status.SERVFAIL
        faults.clear()
        assert (await resolver.lookup("mail.example.org", "A")).status is Status.ANSWER
    finally:
        await resolver.close()


async def test_cname_chain_longer_than_the_bound(knot: KnotServer) -> None:
    resolver = resolver_for(knot.nameserver)
    try:
        found = await resolver.lookup("chain0.example.org", "A")
        assert found.status is Status.ERROR and "CNAME" in found.detail
        assert found.temporary
        near = await resolver.lookup("chain3.example.org", "A")
        assert near.status is Status.ANSWER and near.records == ("192.0.2.1",) and len(near.cnames) == 7
    finally:
        await resolver.close()


async def test_nobody_listening_fails_fast_and_temporarily() -> None:
    resolver = resolver_for(f"127.0.0.1:{free_port()}", timeout=2.0, tries=2)
    try:
        started = time.monotonic()
        found = await resolver.lookup("mail.example.org", "A")
        assert found.temporary
        assert time.monotonic() - started < 1.5  # the ICMP error ends the wait; no 2 s timeout
    finally:
        await resolver.close()


async def test_second_nameserver_answers_when_the_first_is_down(knot: KnotServer) -> None:
    resolver = resolver_for(f"127.0.0.1:{free_port()}", knot.nameserver, timeout=0.3, tries=2)
    try:
        results = [await resolver.lookup("mail.example.org", "A") for _ in range(6)]
        assert all(item.status is Status.ANSWER for item in results)
    finally:
        await resolver.close()


async def test_servfail_moves_on_to_the_next_nameserver(faults: FaultResponder, knot: KnotServer) -> None:
    faults.add("mail.example.org", "A", Fault.SERVFAIL)
    resolver = resolver_for(faults.nameserver, knot.nameserver, tries=2)
    try:
        for _ in range(4):
            assert (await resolver.lookup("mail.example.org", "A")).status is Status.ANSWER
    finally:
        await resolver.close()


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.WRONG_ID])
async def test_junk_replies_are_dropped_not_believed(faults: FaultResponder, fault: Fault) -> None:
    faults.add("mail.example.org", "A", fault)
    resolver = resolver_for(faults.nameserver, timeout=0.15, tries=2)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.TIMEOUT
        assert resolver.client.stats.dropped >= 2
    finally:
        await resolver.close()


async def test_ipv6_nameserver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.data.zones import zones

    with KnotServer(tmp_path, zones(), address="::1") as server:
        assert server.nameserver.startswith("[::1]:")
        resolver = resolver_for(server.nameserver)
        try:
            found = await resolver.lookup(
                "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR"
            )
            assert sorted(found.records) == ["first6.example.org", "second6.example.org"]
        finally:
            await resolver.close()
