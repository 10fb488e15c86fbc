"""Pure: roles and tokens (rdnsgate.access), the fleet as CSV (rdnsgate.monitor.fleet_csv)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.access import GRANTS, Permission, Role, may, new_token, parse_role, token_hash
from rdnsgate.errors import UsageError
from rdnsgate.model import FleetEntry
from rdnsgate.monitor.fleet_csv import fleet_csv, fleet_entry, parse_fleet_csv


def test_roles() -> None:
    assert all(may("admin", permission) for permission in Permission)
    assert may("helpdesk", Permission.WHITELIST_WRITE) and may("helpdesk", Permission.DECISIONS_READ)
    assert not may("helpdesk", Permission.FLEET_READ) and not may("helpdesk", Permission.FLEET_WRITE)
    assert not any(may("root", permission) for permission in Permission)  # an unknown role may nothing
    assert GRANTS[Role.HELPDESK] < GRANTS[Role.ADMIN]
    assert parse_role(" Helpdesk ") is Role.HELPDESK
    with pytest.raises(ValueError, match="want one of admin, helpdesk"):
        parse_role("superuser")


def test_tokens_are_random_and_only_their_hash_is_kept() -> None:
    first, first_hash = new_token()
    second, _ = new_token()
    assert first != second and first.startswith("rdg_") and len(first) == 4 + 43
    assert first_hash == token_hash(first) and len(first_hash) == 64 and first not in first_hash


ips = st.ip_addresses().map(str)
names = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True)
labels = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Cn", "Co", "Cf", "Zl", "Zp", "Zs")), max_size=30)


@given(st.lists(st.tuples(ips, st.none() | names, labels), max_size=20, unique_by=lambda row: fleet_entry(row[0]).ip))
def test_export_reads_back(rows: list[tuple[str, str | None, str]]) -> None:
    entries = [FleetEntry(ip, helo, label) for ip, helo, label in rows]
    assert [(e.ip, e.helo, e.label) for e in parse_fleet_csv(fleet_csv(entries))] == [
        (fleet_entry(ip).ip, helo, label) for ip, helo, label in rows
    ]


def test_csv_rows_are_checked_and_named_by_line() -> None:
    text = "# our fleet\n\n192.0.2.1\n192.0.2.2,MTA2.Example.org ,  eu \n192.0.2.1,again.example.org,\n"
    parsed = parse_fleet_csv(text)
    assert [(e.ip, e.helo, e.label) for e in parsed] == [
        ("192.0.2.1", "again.example.org", ""),  # the last row of an IP wins
        ("192.0.2.2", "mta2.example.org", "eu"),
    ]
    for bad, why in (
        ("192.0.2.1\nnot-an-ip,x,y\n", "line 2: 'not-an-ip' is not an IP address"),
        ("192.0.2.1,a b,x\n", "line 1: HELO 'a b'"),
        ("192.0.2.1,a.example,x,extra\n", "line 1: 4 columns"),
        ("192.0.2.1,," + "x" * 101 + "\n", "line 1: label"),
    ):
        with pytest.raises(UsageError, match=why.replace("(", r"\(").replace(")", r"\)")):
            parse_fleet_csv(bad)
