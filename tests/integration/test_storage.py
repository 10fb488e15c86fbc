"""The store on a real SQLite file and a real PostgreSQL database: migrations, whitelist, decision log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rdnsgate.config import StorageSettings
from rdnsgate.errors import ConfigError, StoreUnavailable, UsageError
from rdnsgate.model import DecisionRecord, WhitelistEntry
from rdnsgate.policy.whitelist import match, parse_expiry, parse_target
from rdnsgate.storage import open_store

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
    from tests.harness.postgres import free_port

    url = f"postgresql://rdnsgate:secret@127.0.0.1:{free_port()}/rdnsgate"
    with pytest.raises(
        StoreUnavailable, match=r"cannot open the store postgresql://rdnsgate:\*\*\*@127.0.0.1"
    ) as caught:
        await open_store(url)
    assert "secret" not in str(caught.value) and "ConnectionRefusedError" in str(caught.value)


def test_storage_settings_are_checked_at_load() -> None:
    with pytest.raises(ConfigError, match=r"storage\.pool_size must be greater than 0"):
        StorageSettings(pool_size=0)
