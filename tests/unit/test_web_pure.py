"""The pure parts of the web app and the monitor: client address, rate limit, pictures, alert body, source note."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.checks.iprev import evaluate_iprev
from rdnsgate.config import MonitorSettings
from rdnsgate.frontends.web.auth import csrf_ok, csrf_token
from rdnsgate.frontends.web.clientip import client_address, forwarded_hops, parse_networks
from rdnsgate.frontends.web.pictures import chain_changes, chain_picture, timeline
from rdnsgate.frontends.web.ratelimit import RateLimiter, client_key
from rdnsgate.model import FleetEntry, Lookup, Status
from rdnsgate.monitor.alerts import alert_body, alert_line
from rdnsgate.monitor.fleet import source_note
from rdnsgate.monitor.scheduler import Monitor
from rdnsgate.monitor.states import Alert, FleetState
from rdnsgate.passwords import fingerprint, hash_password, verify_password
from tests.unit.test_policy_and_cache import _report as report

IP = ipaddress.IPv4Address("192.0.2.1")
PTR = "1.2.0.192.in-addr.arpa"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
PROXY = parse_networks(["127.0.0.1", "10.0.0.0/8"])


def answer(name: str, qtype: str, *records: str, ttl: int = 300) -> Lookup:
    return Lookup(name, qtype, Status.ANSWER, records, ttl=ttl)


# -- client address ------------------------------------------------------------------------------
def test_forwarding_headers_only_from_trusted_proxies() -> None:
    xff = [("X-Forwarded-For", "198.51.100.7, 10.1.2.3")]
    assert client_address("192.0.2.9", xff, PROXY) == "192.0.2.9"  # not a proxy: ignored
    assert client_address("127.0.0.1", xff, PROXY) == "198.51.100.7"  # 10.1.2.3 is a trusted hop
    assert client_address("127.0.0.1", xff, []) == "127.0.0.1"
    spoofed = [("X-Forwarded-For", "203.0.113.1, 198.51.100.7")]  # the client wrote the first entry itself
    assert client_address("127.0.0.1", spoofed, PROXY) == "198.51.100.7"
    forwarded = [("Forwarded", 'for=192.0.2.60;proto=http, for="[2001:db8:cafe::17]:4711"')]
    assert client_address("127.0.0.1", forwarded, PROXY) == "2001:db8:cafe::17"
    assert forwarded_hops(forwarded + xff) == ["192.0.2.60", '"[2001:db8:cafe::17]:4711"']  # Forwarded wins
    assert client_address("127.0.0.1", [("X-Forwarded-For", "unknown")], PROXY) == "127.0.0.1"
    assert client_address("::ffff:127.0.0.1", [("X-Forwarded-For", "198.51.100.8:443")], PROXY) == "198.51.100.8"


@given(st.lists(st.ip_addresses(v=4).map(str), max_size=6), st.ip_addresses().map(str))
def test_client_address_is_a_hop_or_the_peer_and_never_an_inner_proxy(hops: list[str], peer: str) -> None:
    got = client_address(peer, [("X-Forwarded-For", ", ".join(hops))], PROXY)
    address = ipaddress.ip_address(peer)
    mapped = getattr(address, "ipv4_mapped", None)
    assert got in [*hops, str(mapped or address)]
    untrusted = [hop for hop in hops if not any(ipaddress.ip_address(hop) in net for net in PROXY)]
    if peer == "127.0.0.1" and untrusted:
        assert got == untrusted[-1]


# -- rate limit ----------------------------------------------------------------------------------
def test_rate_limit_burst_then_rate_and_ipv6_per_64() -> None:
    limiter = RateLimiter(per_minute=6, burst=2)
    assert [limiter.allow("192.0.2.1", 0.0) for _ in range(2)] == [0.0, 0.0]
    wait = limiter.allow("192.0.2.1", 0.0)
    assert 9.9 < wait <= 10.0  # one token per 10 s
    assert limiter.allow("192.0.2.2", 0.0) == 0.0
    assert limiter.allow("192.0.2.1", 10.0) == 0.0
    assert client_key("2001:db8:1:2:3::9") == client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    small = RateLimiter(per_minute=60, burst=1, max_clients=3)
    for index in range(10):
        small.allow(f"192.0.2.{index}", float(index))
    assert len(small) <= 3


@given(st.lists(st.floats(min_value=0, max_value=600, allow_nan=False), min_size=1, max_size=200))
def test_rate_limit_never_allows_more_than_burst_plus_rate(times: list[float]) -> None:
    limiter = RateLimiter(per_minute=12, burst=3)
    times = sorted(times)
    allowed = sum(1 for moment in times if limiter.allow("198.51.100.1", moment) == 0.0)
    assert allowed <= 3 + (times[-1] - times[0]) * 12 / 60 + 1e-9


# -- auth ---------------------------------------------------------------------------------------------
def test_password_hash_and_csrf() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong") and not verify_password(None, "correct horse battery")
    assert not verify_password("not a hash", "x")
    assert fingerprint(stored) != fingerprint(hash_password("correct horse battery"))  # salted
    session: dict[str, object] = {}
    token = csrf_token(session)
    assert csrf_token(session) == token and csrf_ok(session, token)
    assert not csrf_ok(session, None) and not csrf_ok(session, token + "x") and not csrf_ok({}, token)


# -- pictures -------------------------------------------------------------------------------------
def test_chain_picture_marks_each_link() -> None:
    good = chain_picture(
        report(
            answer(PTR, "PTR", "mail.example.org"),
            {"mail.example.org": answer("mail.example.org", "A", "192.0.2.1")},
            "mail.example.org",
        )
    )
    kinds = [(box.title, box.kind) for box in good.boxes]
    assert kinds == [
        ("client IP", "pass"),
        ("PTR name", "pass"),
        ("A", "pass"),
        ("HELO name", "pass"),
        ("A/AAAA", "pass"),
    ]
    assert all(link.kind == "pass" for link in good.links)
    missing = chain_picture(report(Lookup(PTR, "PTR", Status.NXDOMAIN, negative_ttl=600), {}))
    assert [(box.title, box.kind, box.full, box.note) for box in missing.boxes][1] == (
        "PTR",
        "fail",
        "name does not exist",
        "no PTR name",
    )
    slow = chain_picture(report(Lookup(PTR, "PTR", Status.TIMEOUT, detail="no reply"), {}))
    assert slow.boxes[1].kind == "temp"
    long_name = "x" * 60 + ".example.org"
    other = chain_picture(report(answer(PTR, "PTR", long_name), {long_name: answer(long_name, "A", "192.0.2.99")}))
    name_box = other.boxes[1]
    assert name_box.full == long_name and len(name_box.text) == 30 and name_box.text.endswith("…")
    assert other.boxes[2].kind == "fail" and other.boxes[2].note == "does not lead back to the IP"


def test_timeline_segments_dots_and_changes() -> None:
    history = [
        {"at": T0 - timedelta(days=9), "seen": "ok", "state": "ok", "chain": {"ptr_names": ["a"]}},
        {"at": T0 - timedelta(hours=5), "seen": "broken", "state": "ok", "chain": {"ptr_names": []}},
        {"at": T0 - timedelta(hours=4), "seen": "broken", "state": "broken", "chain": {"ptr_names": []}},
        {"at": T0 - timedelta(hours=1), "seen": "ok", "state": "broken", "chain": {"ptr_names": ["a"]}},
    ]
    chart = timeline(history, T0, timedelta(days=1), width=960)
    assert [(seg.state, seg.x) for seg in chart.segments] == [("ok", 0.0), ("broken", 800.0)]
    assert chart.segments[-1].x + chart.segments[-1].w == 960.0
    assert [dot.seen for dot in chart.dots] == ["broken", "broken", "ok"]  # the 9-day-old check is outside
    assert len(chart.ticks) == 5 and chart.ticks[0][0] == 0.0 and chart.ticks[-1][0] == 960.0
    changes = chain_changes(history)
    assert [(c["before"]["ptr_names"], c["after"]["ptr_names"]) for c in changes] == [(["a"], []), ([], ["a"])]
    assert timeline([], T0, timedelta(days=7)).segments == ()


# -- monitor --------------------------------------------------------------------------------------------
def test_alert_body_is_the_documented_format() -> None:
    entry = FleetEntry(
        "203.0.113.9",
        "mta1.example.org",
        "eu-1",
        "broken",
        T0,
        {"ptr_names": ["mta1.example.org"], "confirmed_name": "mta1.example.org", "helo_aligned": True},
        last_chain={"ptr_names": [], "confirmed_name": None, "helo_aligned": False},
    )
    body = alert_body(entry, Alert(FleetState.OK, FleetState.BROKEN, T0, "no PTR"), "https://rdns.example/")
    assert set(body) == {
        "version",
        "event",
        "ip",
        "label",
        "helo",
        "before",
        "after",
        "at",
        "detail",
        "chain",
        "last_good",
        "url",
    }
    assert body["url"] == "https://rdns.example/servers/203.0.113.9" and body["at"] == "2026-11-23T12:00:00+00:00"
    assert alert_line(body) == "fleet 203.0.113.9 (eu-1): ok -> broken: no PTR"
    assert alert_body(entry, Alert(FleetState.OK, FleetState.BROKEN, T0, ""))["url"] is None


def test_source_note() -> None:
    stale = evaluate_iprev(IP, Lookup(PTR, "PTR", Status.NXDOMAIN, ttl=600, negative_ttl=600), {})
    fixed = evaluate_iprev(
        IP, answer(PTR, "PTR", "mail.example.org"), {"mail.example.org": answer("mail.example.org", "A", "192.0.2.1")}
    )
    assert source_note(stale, fixed, T0) == (
        "fixed at the source (mail.example.org confirms there); resolvers may keep the old answer until 12:10 UTC"
    )
    assert source_note(stale, stale, T0).startswith("broken at the source too: ")
    down = evaluate_iprev(IP, Lookup(PTR, "PTR", Status.TIMEOUT, detail="no reply"), {})
    assert source_note(stale, down, T0).startswith("the zone's own servers could not be asked")


@given(st.floats(min_value=1, max_value=10_000), st.floats(min_value=0, max_value=0.99), st.integers())
def test_intervals_stay_within_the_jitter(interval: float, jitter: float, seed: int) -> None:
    monitor = Monitor(
        MonitorSettings(interval=interval, jitter=jitter),
        None,
        None,
        None,  # type: ignore[arg-type]
        rng=random.Random(seed),
    )
    for _ in range(20):
        assert interval * (1 - jitter) - 1e-9 <= monitor.interval() <= interval * (1 + jitter) + 1e-9
