"""The store on a real SQLite file and a real PostgreSQL database: migrations, whitelist, decision log."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from rdnsgate.config import StorageSettings
from rdnsgate.errors import ConfigError, StoreUnavailable, UsageError
from rdnsgate.model import DecisionRecord, FleetEntry, WhitelistEntry
from rdnsgate.policy.whitelist import match, parse_expiry, parse_target
from rdnsgate.storage import open_store
from rdnsgate.storage.base import create_engine, is_current, newest_revision, upgrade
from rdnsgate.storage.nodes import Node
from rdnsgate.storage.schema import REVISION
from tests.harness.postgres import PostgresServer

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


async def test_whitelist_round_trip(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        kind, value = parse_target("198.51.100.7")
        entry, created = await store.whitelist_add(
            WhitelistEntry(kind, value, "legacy MTA, PTR fix pending", "HD-123", NOW, NOW + timedelta(days=30))
        )
        assert created and entry.value == "198.51.100.7/32" and entry.id is not None
        again, created = await store.whitelist_add(WhitelistEntry(kind, value, "renewed", "HD-124", NOW, None))
        assert not created and again.reason == "renewed" and again.expires_at is None
        await store.whitelist_add(WhitelistEntry(*parse_target("Bücher.example"), "partner", None, NOW, NOW))
        active = await store.whitelist_list(NOW + timedelta(seconds=1))
        assert [item.value for item in active] == ["198.51.100.7/32"]  # the domain entry has expired
        assert len(await store.whitelist_list()) == 2
        import ipaddress

        assert match(active, ipaddress.ip_address("198.51.100.7"), None, NOW) is not None
        assert match(active, ipaddress.ip_address("198.51.100.8"), None, NOW) is None
        assert await store.whitelist_remove(kind, value) == 1
        assert await store.whitelist_remove(kind, value) == 0
    finally:
        await store.close()
    # A second open of the same store runs the migrations again without harm.
    store = await open_store(store_url)
    assert [item.value for item in await store.whitelist_list()] == ["xn--bcher-kva.example"]
    await store.close()


async def test_decision_log_search(store_url: str) -> None:
    store = await open_store(store_url)
    try:
        checks = {"iprev": {"result": "fail", "reason": "ptr-mismatch", "detail": "x"}}
        records = [
            DecisionRecord(
                NOW - timedelta(hours=h),
                f"s{h}",
                "198.51.100.7",
                None,
                "mx.example",
                f"bob{h}@example.org",
                ("a@example.net",),
                "classic",
                "reject",
                "helo",
                "501 5.7.25 PTR Records mismatch",
                checks,
            )
            for h in range(5)
        ]
        await store.decisions_add(records)
        found = await store.decisions_find(ip="198.51.100.7", since=NOW - timedelta(hours=2, minutes=1))
        assert [item.session for item in found] == ["s0", "s1", "s2"]
        assert found[0].checks == checks and found[0].recipients == ("a@example.net",)
        assert found[0].at == NOW
        assert [item.session for item in await store.decisions_find(sender="BOB3@")] == ["s3"]
        assert await store.decisions_find(ip="192.0.2.1") == []
    finally:
        await store.close()


def test_targets_and_expiry() -> None:
    assert parse_target("2001:db8::/48") == ("network", "2001:db8::/48")
    assert parse_target("::ffff:198.51.100.7") == ("network", "198.51.100.7/32")
    assert parse_target("@Example.ORG") == ("domain", "example.org")
    for bad in ("localhost", "not a domain", "300.1.1.1/8"):
        with pytest.raises(UsageError):
            parse_target(bad)
    assert parse_expiry("30d", NOW) == NOW + timedelta(days=30)
    assert parse_expiry("never", NOW) is None
    assert parse_expiry("2026-12-31", NOW) == datetime(2026, 12, 31, tzinfo=UTC)
    with pytest.raises(UsageError, match="in the past"):
        parse_expiry("2020-01-01", NOW)
    with pytest.raises(UsageError):
        parse_expiry("soon", NOW)


async def test_bad_url() -> None:
    with pytest.raises(ConfigError):
        await open_store("mysql://x")


async def test_a_database_away_is_a_clear_error_without_its_password() -> None:
    from tests.harness.knot import free_port

    url = f"postgresql://rdnsgate:secret@127.0.0.1:{free_port()}/rdnsgate"
    with pytest.raises(
        StoreUnavailable, match=r"cannot open the store postgresql://rdnsgate:\*\*\*@127.0.0.1"
    ) as caught:
        await open_store(url)
    assert "secret" not in str(caught.value) and "ConnectionRefusedError" in str(caught.value)


def test_storage_settings_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"storage\.pool_size must be greater than 0"):
        StorageSettings(pool_size=0)


def test_the_schema_revision_is_alembics_newest() -> None:
    assert newest_revision() == REVISION


async def test_upgrade_from_the_first_schema_keeps_the_data(store_url: str) -> None:
    """A store made by the first release, with data in it, upgraded by today's: nothing lost, new tables usable."""
    engine = create_engine(StorageSettings(url=store_url))
    async with engine.begin() as connection:
        assert not await connection.run_sync(is_current)  # no schema yet
        await connection.run_sync(upgrade, "0001")
        assert not await connection.run_sync(is_current)  # an older one
        await connection.execute(
            sa.text(
                "INSERT INTO whitelist (kind, value, reason, created_at) VALUES ('domain', 'example.org', 'old', :at)"
            ),
            {"at": NOW},
        )
        await connection.execute(
            sa.text(
                "INSERT INTO decisions (at, node, session, client_ip, recipients, profile, action, checks)"
                " VALUES (:at, 'mx1', 's1', '192.0.2.1', '[]', 'classic', 'reject', '{}')"
            ),
            {"at": NOW},
        )
    await engine.dispose()
    store = await open_store(store_url)
    try:
        assert await store.schema_version() == newest_revision()
        async with store.engine.connect() as connection:
            assert await connection.run_sync(is_current)
        assert [item.value for item in await store.whitelist_list()] == ["example.org"]
        [old] = await store.decisions_find(ip="192.0.2.1")
        assert (old.node, old.action, old.at) == ("mx1", "reject", NOW)
        await store.node_seen(Node("mx1", "gateway", "0.1.0", NOW, NOW, 3, 0))
        assert [(item.name, item.backlog) for item in await store.nodes_list()] == [("mx1", 3)]
        await store.fleet_add(FleetEntry("192.0.2.9", None, "eu"))
        assert [item.ip for item in await store.fleet_claim("mx1", NOW, 60, 10)] == ["192.0.2.9"]
    finally:
        await store.close()


async def test_two_nodes_never_claim_the_same_server(store_url: str) -> None:
    """Leases: what one node claimed, the other does not get until it is recorded or the lease runs out."""
    one, two = await open_store(store_url), await open_store(store_url)
    try:
        for number in range(20):
            await one.fleet_add(FleetEntry(f"192.0.2.{number + 1}", None, ""))
        first, second = await asyncio.gather(one.fleet_claim("a", NOW, 60, 12), two.fleet_claim("b", NOW, 60, 12))
        ips = [item.ip for item in first] + [item.ip for item in second]
        assert len(ips) == len(set(ips)) == 20  # every server once, none twice
        assert await two.fleet_claim("b", NOW, 60, 50) == []  # all are leased
        # A's lease has run out and B took the server over: A's late result is not stored, B's is.
        late = first[0]
        [taken] = [
            item for item in await two.fleet_claim("b", NOW + timedelta(seconds=61), 60, 50) if item.ip == late.ip
        ]
        assert not await one.fleet_record(late, NOW, "ok", "late", ("unknown", "ok"), node="a")
        hour = NOW + timedelta(hours=1)
        assert await two.fleet_record(taken, NOW, "ok", "on time", ("unknown", "ok"), node="b", next_check=hour)
        assert [(item["before"], item["after"]) for item in await one.fleet_alerts(late.ip)] == [("unknown", "ok")]
        # B's other leases have run out too: a third node gets those servers, but not the one checked an hour ahead.
        later = NOW + timedelta(minutes=3)
        third = {item.ip for item in await one.fleet_claim("c", later, 60, 50)}
        assert third == set(ips) - {late.ip}
        # A node that stops gives its leases back: they are due to the others at once.
        assert await one.fleet_release("c") == 19
        assert {item.ip for item in await two.fleet_claim("d", later, 60, 50)} == third
    finally:
        await one.close()
        await two.close()


async def test_old_decisions_are_pruned_in_batches(store_url: str) -> None:
    store = await open_store(store_url)
    try:

        def record(at: datetime, session: str) -> DecisionRecord:
            return DecisionRecord(at, session, "192.0.2.7", None, None, None, (), "classic", "reject", "helo", None, {})

        records = [record(NOW - timedelta(days=40, minutes=m), f"s{m}") for m in range(25)] + [record(NOW, "new")]
        await store.decisions_add(records)
        cutoff = NOW - timedelta(days=30)
        assert [await store.decisions_prune(cutoff, batch=10) for _ in range(4)] == [10, 10, 5, 0]
        assert [item.session for item in await store.decisions_find()] == ["new"]
        assert await store.decisions_count() == 1
    finally:
        await store.close()


async def test_a_whitelist_change_is_announced_to_listeners(postgres: PostgresServer) -> None:
    """PostgreSQL NOTIFY at commit; the listener hears it (and once at connect, for what it missed).

    PostgreSQL's only: SQLite nodes rely on the periodic reload."""
    from rdnsgate.storage.listen import listen
    from rdnsgate.storage.whitelist import CHANGED

    url = postgres.create_database()
    store = await open_store(url)
    heard = asyncio.Event()
    listener = asyncio.get_running_loop().create_task(listen(url, CHANGED, heard.set))
    try:
        await asyncio.wait_for(heard.wait(), 10)  # the call after connecting
        heard.clear()
        await store.whitelist_add(WhitelistEntry(*parse_target("example.org"), "partner", None, NOW, None))
        await asyncio.wait_for(heard.wait(), 1)
        heard.clear()
        await store.whitelist_remove("domain", "example.org")
        await asyncio.wait_for(heard.wait(), 1)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await listener
        await store.close()


async def test_behind_pgbouncer_in_transaction_mode(postgres: PostgresServer) -> None:
    """storage.pgbouncer: every statement works when each transaction may land on another server connection."""
    from tests.harness.postgres import Pgbouncer

    bouncer = Pgbouncer(postgres).start()
    try:
        url = bouncer.url(postgres.create_database())
        store = await open_store(StorageSettings(url=url, pgbouncer=True))
        try:
            for round_ in range(3):  # the same statements again: no prepared statement may outlive its transaction
                await store.whitelist_add(WhitelistEntry("domain", f"r{round_}.example", "partner", None, NOW, None))
                assert len(await store.whitelist_list()) == round_ + 1
                await store.decisions_add([DecisionRecord(NOW, f"s{round_}", "192.0.2.1", None, None, None, (),
                                                          "classic", "accept", None, None, {})])  # fmt: skip
                await asyncio.gather(*(store.decisions_find(ip="192.0.2.1") for _ in range(5)))
            assert await store.schema_version() == newest_revision()
        finally:
            await store.close()
    finally:
        bouncer.stop()


async def test_the_plain_insert_stores_what_the_typed_one_does(store_url: str) -> None:
    """decisions_add hands the driver plain rows; read back, they equal rows inserted through the column types."""
    from rdnsgate.storage.schema import decisions

    store = await open_store(store_url)
    checks = {"iprev": {"result": "fail", "reason": "ptr-mismatch", "detail": 'Bücher "quoted" \\ <x>'}}
    made = [
        DecisionRecord(NOW - timedelta(microseconds=n * 123457), f"s{n}", "2001:db8::1", "ptr.example", "hélo",
                       "a@b.example", ("x@y.example", "ü@z.example"), "strict", "reject", "rcpt", "550 5.7.25 no",
                       checks, "network 192.0.2.0/24", node="mx1")
        for n in range(3)
    ]  # fmt: skip
    try:
        await store.decisions_add(made[:2])
        rows = [
            {
                "at": item.at, "node": item.node, "session": f"typed-{item.session}", "client_ip": item.client_ip,
                "ptr": item.ptr, "helo": item.helo, "sender": item.sender, "recipients": list(item.recipients),
                "profile": item.profile, "action": item.action, "stage": item.stage, "reply": item.reply,
                "checks": item.checks, "whitelisted": item.whitelisted,
            }
            for item in made[:2]
        ]  # fmt: skip
        async with store.engine.begin() as connection:
            await connection.execute(decisions.insert(), rows)
        found = await store.decisions_find(limit=10)
        plain = sorted((item for item in found if not item.session.startswith("typed-")), key=lambda x: x.session)
        typed = sorted((item for item in found if item.session.startswith("typed-")), key=lambda x: x.session)
        assert len(plain) == len(typed) == 2
        for ours, theirs in zip(plain, typed, strict=True):
            assert ours == replace(theirs, session=theirs.session.removeprefix("typed-"), id=ours.id)
        assert plain[0].at == made[0].at and plain[0].checks == checks and plain[0].recipients == made[0].recipients
    finally:
        await store.close()
