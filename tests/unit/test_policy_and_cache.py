"""Cache expiry and bound; profile rules parsing; decision order; advice; header safety."""

from __future__ import annotations

import dataclasses
import ipaddress
from datetime import UTC, datetime

import pytest

from rdnsgate.checks.generic import evaluate_generic
from rdnsgate.checks.helo import classify_helo, evaluate_alignment, evaluate_helo
from rdnsgate.checks.iprev import evaluate_iprev
from rdnsgate.checks.sender import evaluate_sender, parse_reverse_path
from rdnsgate.errors import ConfigError, UsageError
from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.nameservers import parse_nameserver, system_nameservers
from rdnsgate.model import MX, Lookup, Report, Status
from rdnsgate.policy.advice import advise, recheck_after
from rdnsgate.policy.decide import decide
from rdnsgate.policy.headers import authentication_results
from rdnsgate.policy.profiles import BUILTIN, Action, Rule, Stage, get_profile, parse_profile

IP = ipaddress.IPv4Address("192.0.2.1")


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_expires_and_bounds() -> None:
    clock = Clock()
    cache = LookupCache(max_entries=2, max_ttl=100, clock=clock)
    answer = Lookup("a.example", "A", Status.ANSWER, ("192.0.2.1",), ttl=500)
    cache.put(("a", "A"), answer)
    clock.now += 99
    assert cache.get(("a", "A")) is answer  # capped at max_ttl=100
    clock.now += 2
    assert cache.get(("a", "A")) is None
    cache.put(("b", "A"), Lookup("b", "A", Status.NXDOMAIN, negative_ttl=50))
    cache.put(("c", "A"), Lookup("c", "A", Status.NODATA, negative_ttl=50))
    cache.put(("d", "A"), Lookup("d", "A", Status.NODATA, negative_ttl=50))
    assert len(cache) == 2 and cache.get(("b", "A")) is None  # least recently used went first
    cache.put(("e", "A"), Lookup("e", "A", Status.TIMEOUT))
    assert cache.get(("e", "A")) is None  # temporary errors are never cached


def test_rules_parse_and_refuse_nonsense() -> None:
    assert Rule.parse("reject 550 5.7.25 go away", "k") == Rule(Action.REJECT, 550, "5.7.25", "go away")
    assert Rule.parse("log", "k") == Rule(Action.LOG)
    for bad, words in [
        ("bounce 550 5.7.1 x", "unknown action"),
        ("tempfail 550 5.7.1 x", "must be 4xx"),
        ("reject 550 4.7.1 x", "does not match"),
        ("reject 550", "needs 'CODE ENHANCED TEXT'"),
        ("log 250 2.0.0 fine", "takes no reply"),
    ]:
        with pytest.raises(ConfigError, match=words):
            Rule.parse(bad, "profile x.rules.'iprev fail'")
    with pytest.raises(ConfigError, match="unknown check"):
        parse_profile("x", {"rules": {"ptr fail": "log"}})
    with pytest.raises(ConfigError, match="unknown key"):
        parse_profile("x", {"rulez": {}})
    with pytest.raises(ConfigError, match="unknown profile"):
        get_profile("gmail")


def test_every_builtin_temperror_rule_is_4xx() -> None:
    for profile in BUILTIN.values():
        for (check, result, reason), rule in profile.rules.items():
            if result == "temperror" and rule.code is not None:
                assert 400 <= rule.code < 500, (profile.name, check, reason)


def _report(
    ptr: Lookup,
    forward: dict[str, Lookup],
    helo: str | None = None,
    sender: str | None = None,
    sender_mx: Lookup | None = None,
) -> Report:
    iprev = evaluate_iprev(IP, ptr, forward)
    form = classify_helo(helo)
    a = Lookup(helo or "", "A", Status.ANSWER, ("192.0.2.1",), ttl=60) if form.needs_lookup else None
    sform = parse_reverse_path(sender)
    return Report(
        IP,
        iprev,
        helo,
        evaluate_helo(form, a, None),
        evaluate_alignment(form, IP, iprev, a),
        sform.address or None,
        sform.domain or None,
        evaluate_sender(sform, sender_mx) if sform.needs_lookup else evaluate_sender(sform),
        evaluate_generic(iprev),
    )


NO_PTR = Lookup("1.2.0.192.in-addr.arpa", "PTR", Status.NXDOMAIN, negative_ttl=600, soa_zone="2.0.192.in-addr.arpa")
NULL_MX = Lookup("example.org", "MX", Status.ANSWER, ("",), (MX(0, ""),))


def test_stage_order_and_close() -> None:
    report = _report(NO_PTR, {}, "mail.example.org", "bob@example.org", NULL_MX)
    classic = decide(report, get_profile("classic"))
    assert (classic.action, classic.stage, classic.reply and classic.reply.code, classic.close) == (
        Action.REJECT,
        Stage.HELO,
        501,
        True,
    )
    postfix = decide(report, get_profile("postfix"))
    assert (postfix.stage, postfix.reply and postfix.reply.code) == (Stage.RCPT, 450)  # iprev first, like Postfix
    assert "[192.0.2.1]" in str(postfix.reply)
    strict = decide(report, get_profile("strict"))
    assert strict.close is False and strict.reply is not None and strict.reply.code == 550
    monitor = decide(report, get_profile("monitor"))
    assert monitor.action is Action.TAG and monitor.headers[0][1].startswith("localhost; iprev=permerror")


def test_reject_beats_tempfail_in_the_same_stage() -> None:
    timeout = Lookup("1.2.0.192.in-addr.arpa", "PTR", Status.TIMEOUT, detail="no reply")
    report = _report(timeout, {}, sender="bob@example.org", sender_mx=NULL_MX)
    postfix = decide(report, get_profile("postfix"))
    assert postfix.action is Action.REJECT and postfix.reply is not None and postfix.reply.code == 550
    only_temp = decide(_report(timeout, {}), get_profile("postfix"))
    assert only_temp.action is Action.TEMPFAIL and only_temp.reply is not None and only_temp.reply.code == 450


def test_whitelisted_is_accepted_but_recorded() -> None:
    decision = decide(_report(NO_PTR, {}), get_profile("strict"), whitelisted="198.51.100.0/24 HD-1")
    assert decision.action is Action.ACCEPT and decision.whitelisted == "198.51.100.0/24 HD-1"
    assert any(item.action is Action.REJECT for item in decision.verdicts)  # what would have happened


def test_reply_text_cannot_inject_lines() -> None:
    report = _report(NO_PTR, {}, helo="mail.example.org")
    report = Report(
        report.ip,
        report.iprev,
        "evil\r\n250 OK\x00",
        report.helo,
        report.helo_align,
        None,
        None,
        report.sender,
        report.generic,
    )
    for profile in BUILTIN.values():
        decision = decide(report, profile, check_url="https://check.example/?ip=192.0.2.1\r\nX: y")
        if decision.reply is not None:
            assert "\r" not in decision.reply.text and "\n" not in decision.reply.text
            assert len(str(decision.reply)) <= 512


def test_authentication_results_comment_is_safe() -> None:
    ptr = Lookup("1.2.0.192.in-addr.arpa", "PTR", Status.ANSWER, ("a(b)c.example.org",), ttl=60)
    iprev = evaluate_iprev(IP, ptr, {})
    assert authentication_results("mx.example.net", iprev) == "mx.example.net; iprev=fail policy.iprev=192.0.2.1"
    # Defence in depth: even a name that got past validation cannot break out of the comment.
    iprev = dataclasses.replace(iprev, confirmed_name="a(b)\\c\r\nX-Evil: 1")
    header = authentication_results("mx.example.net", iprev)
    assert header.startswith("mx.example.net; iprev=") and "\\(" in header and "\n" not in header


def test_advice_names_who_fixes_what_and_when() -> None:
    now = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    report = _report(NO_PTR, {})
    steps = advise(report, now)
    assert "hosting provider" in steps[0].text and "600 s" in steps[0].text and "10:10 UTC" in steps[0].text
    assert recheck_after(report) == 600


def test_nameserver_forms(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert str(parse_nameserver("127.0.0.1")) == "127.0.0.1:53"
    assert str(parse_nameserver("[::1]:5353")) == "[::1]:5353"
    assert str(parse_nameserver("::1")) == "[::1]:53"
    for bad in ("dns.example", "127.0.0.1:0", "127.0.0.1:x", "[::1", "[::1]x"):
        with pytest.raises(UsageError):
            parse_nameserver(bad)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\noptions edns0\n")
    assert [str(item) for item in system_nameservers(conf)] == ["127.0.0.53:53", "[fe80::1]:53"]
    conf.write_text("search example\n")
    with pytest.raises(UsageError, match="names no nameserver"):
        system_nameservers(conf)


async def test_decision_log_never_blocks_and_counts_overflow() -> None:
    import asyncio

    from rdnsgate.model import DecisionRecord
    from rdnsgate.policy.decision_log import DecisionLog

    class SlowSink:
        def __init__(self) -> None:
            self.stored: list[DecisionRecord] = []

        async def decisions_add(self, records: object) -> None:
            await asyncio.sleep(0.05)
            self.stored.extend(records)  # type: ignore[arg-type]

    sink = SlowSink()
    journal = DecisionLog(sink, maxsize=5)
    journal.start()
    record = DecisionRecord(NOW_RECORD, "s", "192.0.2.1", None, None, None, (), "classic", "accept", None, None, {})
    for _ in range(20):
        journal.record(record)  # returns at once, whatever the sink does
    assert journal.dropped >= 14
    await journal.close()
    assert len(sink.stored) + journal.dropped == 20
    assert journal.written == len(sink.stored)


NOW_RECORD = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
