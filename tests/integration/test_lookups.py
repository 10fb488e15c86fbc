"""The DNS layer against real servers: knotd, the fault responder, and a port where nobody listens.

Each test of the asking itself runs twice: through `Resolver` (a coroutine per
question, what mail sessions use) and through `BulkResolver` (callbacks, what
the audit uses); both must say the same.  Joining equal questions and the cache
are the `Resolver`'s alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import uvloop

from rdnsgate.lookups.bulk import BulkClient, BulkResolver
from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.nameservers import parse_nameserver
from rdnsgate.lookups.transport import DnsClient
from rdnsgate.model import Lookup, Status
from tests.harness.faultdns import Fault, FaultResponder
from tests.harness.knot import KnotServer, free_port


class AwaitedBulk:
    """A `BulkResolver` awaited like a `Resolver`, so that one test body serves both."""

    def __init__(self, bulk: BulkResolver) -> None:
        self.bulk = bulk
        self.client = bulk.client

    async def lookup(self, name: str, qtype: str, deadline: float | None = None) -> Lookup:
        future: asyncio.Future[Lookup] = asyncio.get_running_loop().create_future()
        self.bulk.lookup(name, qtype, future.set_result, deadline)
        return await future

    async def close(self) -> None:
        await self.bulk.close()


@pytest.fixture(params=["resolver", "bulk"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def resolver_for(*servers: str, cache: LookupCache | None = None, kind: str = "resolver", **client: float) -> Any:
    options: dict[str, Any] = {"timeout": 0.3, "tries": 3, **client}
    nameservers = [parse_nameserver(s) for s in servers]
    if kind == "bulk":
        assert cache is None
        return AwaitedBulk(BulkResolver(BulkClient(nameservers, **options)))
    return Resolver(DnsClient(nameservers, **options), cache)


async def test_answers_nxdomain_nodata_with_negative_ttl(knot: KnotServer, kind: str) -> None:
    resolver = resolver_for(knot.nameserver, kind=kind)
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


async def test_retry_after_a_lost_reply(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.DROP_FIRST)
    resolver = resolver_for(faults.nameserver, timeout=0.2, kind=kind)
    try:
        started = time.monotonic()
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.ANSWER
        assert faults.asked("mail.example.org", "A") == 2
        assert time.monotonic() - started >= 0.15  # it waited for the first try to expire
        assert resolver.client.stats.timeouts == 1
    finally:
        await resolver.close()


async def test_timeout_gives_up_after_the_tries(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.TIMEOUT)
    resolver = resolver_for(faults.nameserver, timeout=0.1, tries=3, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.TIMEOUT and "no reply" in found.detail
        assert faults.asked("mail.example.org", "A") == 3
    finally:
        await resolver.close()


async def test_deadline_cuts_the_retries_short(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.TIMEOUT)
    resolver = resolver_for(faults.nameserver, timeout=1.0, tries=5, kind=kind)
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        found = await resolver.lookup("mail.example.org", "A", deadline=started + 0.3)
        assert found.status is Status.TIMEOUT
        assert loop.time() - started < 0.8
    finally:
        await resolver.close()


async def test_in_flight_bound_holds(faults: FaultResponder, kind: str) -> None:
    resolver = resolver_for(faults.nameserver, max_inflight=5, kind=kind)
    try:
        names = [f"n{i}.big24.example.org" for i in range(60)]
        results = await asyncio.gather(*(resolver.lookup(name, "A") for name in names))
        assert all(item.status is Status.ANSWER for item in results)
        assert resolver.client.stats.peak_inflight == 5
        assert resolver.client.inflight == 0
    finally:
        await resolver.close()


async def test_identical_questions_share_one_query(faults: FaultResponder) -> None:
    resolver = resolver_for(faults.nameserver, kind=kind)
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


async def test_cname_chain_longer_than_the_bound(knot: KnotServer, kind: str) -> None:
    resolver = resolver_for(knot.nameserver, kind=kind)
    try:
        found = await resolver.lookup("chain0.example.org", "A")
        assert found.status is Status.ERROR and "CNAME" in found.detail
        assert found.temporary
        near = await resolver.lookup("chain3.example.org", "A")
        assert near.status is Status.ANSWER and near.records == ("192.0.2.1",) and len(near.cnames) == 7
    finally:
        await resolver.close()


async def test_nobody_listening_fails_fast_and_temporarily(kind: str) -> None:
    resolver = resolver_for(f"127.0.0.1:{free_port()}", timeout=2.0, tries=2, kind=kind)
    try:
        started = time.monotonic()
        found = await resolver.lookup("mail.example.org", "A")
        assert found.temporary
        assert time.monotonic() - started < 1.5  # the ICMP error ends the wait; no 2 s timeout
    finally:
        await resolver.close()


async def test_second_nameserver_answers_when_the_first_is_down(knot: KnotServer, kind: str) -> None:
    resolver = resolver_for(f"127.0.0.1:{free_port()}", knot.nameserver, timeout=0.3, tries=2, kind=kind)
    try:
        results = [await resolver.lookup("mail.example.org", "A") for _ in range(6)]
        assert all(item.status is Status.ANSWER for item in results)
    finally:
        await resolver.close()


async def test_servfail_moves_on_to_the_next_nameserver(faults: FaultResponder, knot: KnotServer, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.SERVFAIL)
    resolver = resolver_for(faults.nameserver, knot.nameserver, tries=2, kind=kind)
    try:
        for _ in range(4):
            assert (await resolver.lookup("mail.example.org", "A")).status is Status.ANSWER
    finally:
        await resolver.close()


@pytest.mark.parametrize("fault", [Fault.GARBAGE, Fault.WRONG_ID])
async def test_junk_replies_are_dropped_not_believed(faults: FaultResponder, fault: Fault, kind: str) -> None:
    faults.add("mail.example.org", "A", fault)
    resolver = resolver_for(faults.nameserver, timeout=0.15, tries=2, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.TIMEOUT
        assert resolver.client.stats.dropped >= 2
    finally:
        await resolver.close()


async def test_a_reply_naming_the_question_in_other_case_is_taken(faults: FaultResponder, kind: str) -> None:
    """Names are equal up to case (RFC 4343): a server that answers MAIL.EXAMPLE.ORG for mail.example.org is
    answering the question, and its answer counts (the clients compare the bytes as asked first)."""
    faults.add("mail.example.org", "A", Fault.OTHER_CASE)
    resolver = resolver_for(faults.nameserver, timeout=1.0, tries=1, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.ANSWER and found.records == ("192.0.2.1",)
        assert resolver.client.stats.dropped == 0
    finally:
        await resolver.close()


async def test_ipv6_nameserver(tmp_path, kind: str) -> None:  # type: ignore[no-untyped-def]
    from tests.data.zones import zones

    with KnotServer(tmp_path, zones(), address="::1") as server:
        assert server.nameserver.startswith("[::1]:")
        resolver = resolver_for(server.nameserver, kind=kind)
        try:
            found = await resolver.lookup(
                "5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR"
            )
            assert sorted(found.records) == ["first6.example.org", "second6.example.org"]
        finally:
            await resolver.close()


async def test_truncated_reply_is_asked_again_over_tcp(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.TRUNCATE)
    resolver = resolver_for(faults.nameserver, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert (found.status, found.records) == (Status.ANSWER, ("192.0.2.1",))
        assert resolver.client.stats.sent_tcp == 1
    finally:
        await resolver.close()


async def test_a_wrong_id_is_dropped_and_the_right_reply_taken(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.WRONG_ID_THEN_RIGHT)
    resolver = resolver_for(faults.nameserver, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.ANSWER
        assert resolver.client.stats.dropped == 1 and resolver.client.stats.timeouts == 0
    finally:
        await resolver.close()


@pytest.mark.parametrize(("fault", "status"), [(Fault.REFUSED, Status.REFUSED), (Fault.SERVFAIL, Status.SERVFAIL)])
async def test_one_nameserver_refusing_is_the_outcome_at_once(
    faults: FaultResponder, kind: str, fault: Fault, status: Status
) -> None:
    faults.add("mail.example.org", "A", fault)
    resolver = resolver_for(faults.nameserver, kind=kind, tries=3)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is status and found.temporary
        assert faults.asked("mail.example.org", "A") == 1  # no retry against the same server
    finally:
        await resolver.close()


async def test_cname_loop_is_an_error(faults: FaultResponder, kind: str) -> None:
    faults.add("mail.example.org", "A", Fault.CNAME_LOOP)
    resolver = resolver_for(faults.nameserver, kind=kind)
    try:
        found = await resolver.lookup("mail.example.org", "A")
        assert found.status is Status.ERROR and "loop" in found.detail
    finally:
        await resolver.close()


async def test_bulk_answers_many_questions_at_once_in_any_order(knot: KnotServer) -> None:
    """A thousand questions asked before any reply is read: each callback called once, with its own answer."""
    bulk = BulkResolver(BulkClient([parse_nameserver(knot.nameserver)], timeout=1.0, max_inflight=50))
    loop = asyncio.get_running_loop()
    answers: dict[int, list[Lookup]] = {}
    done = loop.create_future()
    total = 1000

    def got(index: int, lookup: Lookup) -> None:
        answers.setdefault(index, []).append(lookup)
        if len(answers) == total and not done.done():
            done.set_result(None)

    try:
        for index in range(total):
            name = "mail.example.org" if index % 2 else f"n{index}.nowhere.example.org"
            bulk.lookup(name, "A", lambda lookup, index=index: got(index, lookup))
        await asyncio.wait_for(done, 30)
        await asyncio.sleep(0.1)  # nothing is called twice, late
        assert all(len(items) == 1 for items in answers.values())
        for index, (lookup,) in answers.items():
            expected = Status.ANSWER if index % 2 else Status.NXDOMAIN
            assert lookup.status is expected, (index, lookup)
        assert bulk.client.inflight == 0 and bulk.client.stats.peak_inflight == 50
    finally:
        await bulk.close()


@pytest.mark.parametrize("runner", ["asyncio", "uvloop"])
def test_bulk_nobody_listening_fails_every_question_fast(runner: str) -> None:
    """Questions spread over the client's sockets, to a port where nobody listens: the ICMP errors end
    every try at once, whether a socket learns of its error when it reads (one question on each of the
    four) or when it sends the next one (fifty); no try waits for its timeout, and the sockets stay
    usable.  On both loops: the audit runs on uvloop."""

    async def ask() -> None:
        client = BulkClient([parse_nameserver(f"127.0.0.1:{free_port()}")], timeout=3.0, tries=2)
        bulk = AwaitedBulk(BulkResolver(client))
        try:
            for count in (4, 50):
                started = time.monotonic()
                results = await asyncio.gather(*(bulk.lookup(f"n{i}.example.org", "A") for i in range(count)))
                assert all(item.status is Status.TIMEOUT and "unreachable" in item.detail for item in results)
                assert time.monotonic() - started < 2.0
            again = await bulk.lookup("mail.example.org", "A")
            assert again.temporary and "unreachable" in again.detail
        finally:
            await bulk.close()

    if runner == "uvloop":
        uvloop.run(ask())
    else:
        asyncio.run(ask())
