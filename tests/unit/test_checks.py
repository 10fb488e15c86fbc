"""The pure checks on plain values, and the properties that must hold for any input."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from rdnsgate.checks.generic import evaluate_generic
from rdnsgate.checks.helo import Form, classify_helo, evaluate_alignment, evaluate_helo
from rdnsgate.checks.iprev import evaluate_iprev, names_to_examine
from rdnsgate.checks.names import is_fqdn, is_hostname, normalize, parse_address_literal, parse_ip, to_ascii_domain
from rdnsgate.checks.sender import evaluate_sender, parse_reverse_path
from rdnsgate.model import MX, Lookup, Report, Result, Status
from rdnsgate.policy.decide import decide
from rdnsgate.policy.profiles import BUILTIN

IP = ipaddress.IPv4Address("192.0.2.1")
IP6 = ipaddress.IPv6Address("2001:db8::1")
TEMPORARY = [Status.TIMEOUT, Status.SERVFAIL, Status.REFUSED, Status.ERROR]


def ans(name: str, qtype: str, *records: str) -> Lookup:
    return Lookup(name, qtype, Status.ANSWER, records, ttl=300)


def neg(name: str, qtype: str, status: Status = Status.NXDOMAIN) -> Lookup:
    return Lookup(name, qtype, status, negative_ttl=300, soa_zone="example.org")


PTR = "1.2.0.192.in-addr.arpa"


# --- names ------------------------------------------------------------------------------
def test_hostnames() -> None:
    assert is_hostname("mail.example.org") and is_fqdn("mail.example.org")
    assert is_hostname("localhost") and not is_fqdn("localhost")
    for bad in ("", "-a.example", "a-.example", "a..b", "bad_name.example", "192.0.2.1", "a" * 64 + ".org", "x y.org"):
        assert not is_hostname(bad), bad
    assert not is_hostname(".".join(["abcdefghi"] * 26))  # 259 characters
    assert normalize("Mail.Example.ORG.") == "mail.example.org"


def test_literals_and_ips() -> None:
    assert parse_address_literal("[192.0.2.1]") == IP
    assert parse_address_literal("[IPv6:2001:db8::1]") == IP6
    assert parse_address_literal("mail.example.org") is None
    assert parse_ip("::ffff:192.0.2.1") == IP
    assert to_ascii_domain("Bücher.Example") == "xn--bcher-kva.example"


# --- iprev -----------------------------------------------------------------------------
def test_iprev_rules() -> None:
    ptr = ans(PTR, "PTR", "a.example.org", "b.example.org")
    report = evaluate_iprev(
        IP,
        ptr,
        {
            "a.example.org": ans("a.example.org", "A", "192.0.2.9"),
            "b.example.org": ans("b.example.org", "A", "192.0.2.1"),
        },
    )
    assert (report.result.result, report.confirmed_name) == (Result.PASS, "b.example.org")
    assert evaluate_iprev(IP, neg(PTR, "PTR"), {}).result.reason == "no-ptr"
    assert evaluate_iprev(IP, neg(PTR, "PTR", Status.NODATA), {}).result.result is Result.PERMERROR
    assert evaluate_iprev(IP, Lookup(PTR, "PTR", Status.TIMEOUT), {}).result.reason == "ptr-lookup"
    bad = ans(PTR, "PTR", "-bad.example.org")
    assert evaluate_iprev(IP, bad, {}).result.reason == "invalid-ptr"
    under = ans(PTR, "PTR", "mail_1.example.org")  # `_` is DNS, and Postfix looks such names up: so do we
    confirmed = evaluate_iprev(IP, under, {"mail_1.example.org": ans("mail_1.example.org", "A", "192.0.2.1")})
    assert (confirmed.result.result, confirmed.confirmed_name) == (Result.PASS, "mail_1.example.org")
    gone = ans(PTR, "PTR", "gone.example.org")
    assert (
        evaluate_iprev(IP, gone, {"gone.example.org": neg("gone.example.org", "A")}).result.reason == "ptr-name-unknown"
    )
    v6 = evaluate_iprev(
        IP6, ans(PTR, "PTR", "m.example.org"), {"m.example.org": neg("m.example.org", "AAAA", Status.NODATA)}
    )
    assert v6.result.reason == "ptr-mismatch"


def test_ptr_names_capped_and_deduplicated() -> None:
    names = [f"n{i}.example.org" for i in range(30)] + ["N0.Example.org."]
    split = names_to_examine(ans(PTR, "PTR", *names), 10)
    assert len(split.examined) == 10 and len(split.omitted) == 20


statuses = st.sampled_from(list(Status))


@settings(max_examples=400)
@given(ptr_status=statuses, forward=st.lists(st.tuples(statuses, st.booleans()), min_size=0, max_size=5))
def test_temporary_never_becomes_permanent_iprev(ptr_status: Status, forward: list[tuple[Status, bool]]) -> None:
    names = [f"n{i}.example.org" for i in range(len(forward))]
    ptr = Lookup(PTR, "PTR", ptr_status, tuple(names) if ptr_status is Status.ANSWER else ())
    lookups = {}
    for name, (status, match) in zip(names, forward, strict=True):
        records = ("192.0.2.1" if match else "192.0.2.2",) if status is Status.ANSWER else ()
        lookups[name] = Lookup(name, "A", status, records)
    result = evaluate_iprev(IP, ptr, lookups).result
    if result.result in (Result.FAIL, Result.PERMERROR):
        assert not ptr.temporary
        if ptr_status is Status.ANSWER:
            assert not any(item.temporary for item in lookups.values())


# --- HELO --------------------------------------------------------------------------------
def test_helo_forms() -> None:
    assert classify_helo(None).form is Form.NOT_GIVEN
    assert classify_helo("").form is Form.MISSING
    assert classify_helo("[192.0.2.1]").form is Form.LITERAL
    assert classify_helo("192.0.2.1").form is Form.BARE_IP
    assert classify_helo("localhost").form is Form.NOT_FQDN
    assert classify_helo("bad_name.example").form is Form.UNDERSCORE
    assert classify_helo("-bad.example").form is Form.INVALID
    assert classify_helo("bad_name").form is Form.INVALID  # one label with `_`: no FQDN either
    under = classify_helo("bad_name.example")
    exists = evaluate_helo(under, ans("bad_name.example", "A", "192.0.2.9"), neg("bad_name.example", "AAAA"))
    assert (exists.result, exists.reason) == (Result.PERMERROR, "underscore")
    gone = evaluate_helo(under, neg("bad_name.example", "A"), neg("bad_name.example", "AAAA"))
    assert (gone.result, gone.reason) == (Result.FAIL, "unknown")
    assert classify_helo("x" * 300).form is Form.INVALID
    assert classify_helo("Mail.Example.org.").name == "mail.example.org"


def test_helo_existence() -> None:
    form = classify_helo("h.example.org")
    assert (
        evaluate_helo(form, ans("h.example.org", "A", "192.0.2.1"), neg("h", "AAAA", Status.NODATA)).reason == "exists"
    )
    assert evaluate_helo(form, neg("h", "A"), neg("h", "AAAA")).reason == "unknown"
    mx = Lookup("h", "MX", Status.ANSWER, ("mx.example.org",), (MX(10, "mx.example.org"),))
    assert evaluate_helo(form, neg("h", "A", Status.NODATA), neg("h", "AAAA", Status.NODATA), mx).reason == "mx-only"
    assert (
        evaluate_helo(form, Lookup("h", "A", Status.TIMEOUT), neg("h", "AAAA", Status.NODATA)).reason == "helo-lookup"
    )


# --- sender --------------------------------------------------------------------------------
def test_sender_paths() -> None:
    assert parse_reverse_path("<>").form.value == "null"
    assert parse_reverse_path("<@a,@b:bob@Example.ORG>").domain == "example.org"
    assert parse_reverse_path("bob@bücher.example").domain == "xn--bcher-kva.example"
    form = parse_reverse_path("bob@example.org")
    null = Lookup("example.org", "MX", Status.ANSWER, ("",), (MX(0, ""),))
    assert evaluate_sender(form, null).reason == "null-mx"
    assert evaluate_sender(form, neg("example.org", "MX")).reason == "unknown-domain"
    assert evaluate_sender(form, Lookup("example.org", "MX", Status.SERVFAIL)).result is Result.TEMPERROR
    nodata = neg("example.org", "MX", Status.NODATA)
    assert (
        evaluate_sender(form, nodata, ans("example.org", "A", "192.0.2.5"), neg("e", "AAAA", Status.NODATA)).reason
        == "address"
    )
    assert (
        evaluate_sender(form, nodata, neg("e", "A", Status.NODATA), neg("e", "AAAA", Status.NODATA)).reason
        == "no-mail-records"
    )


# --- the property that matters most ----------------------------------------------------------
lookup_status = st.sampled_from(list(Status))


@settings(max_examples=500)
@given(
    ptr=lookup_status,
    fwd=lookup_status,
    fwd_match=st.booleans(),
    helo_text=st.sampled_from(["mail.example.org", "[192.0.2.1]", "localhost", "bad_name.x", None, ""]),
    ha=lookup_status,
    haaaa=lookup_status,
    hmx=lookup_status,
    sender=st.sampled_from(["bob@example.org", "<>", None, "bob"]),
    smx=lookup_status,
    sa=lookup_status,
    saaaa=lookup_status,
)
def test_no_temperror_is_ever_a_5xx(
    ptr: Status,
    fwd: Status,
    fwd_match: bool,
    helo_text: str | None,
    ha: Status,
    haaaa: Status,
    hmx: Status,
    sender: str | None,
    smx: Status,
    sa: Status,
    saaaa: Status,
) -> None:
    """For any mix of lookup outcomes: a check touched by a temporary error is never fail/permerror,
    and no profile answers a temperror-caused refusal with 5xx."""
    name = "mail.example.org"
    ptr_lookup = Lookup(PTR, "PTR", ptr, (name,) if ptr is Status.ANSWER else ())
    fwd_lookup = Lookup(name, "A", fwd, ("192.0.2.1" if fwd_match else "192.0.2.2",) if fwd is Status.ANSWER else ())
    iprev = evaluate_iprev(IP, ptr_lookup, {name: fwd_lookup})
    if ptr_lookup.temporary or (ptr is Status.ANSWER and fwd_lookup.temporary and not iprev.confirmed_name):
        assert iprev.result.result is Result.TEMPERROR

    def mk(qname: str, qtype: str, status: Status, record: str) -> Lookup:
        if status is not Status.ANSWER:
            return Lookup(qname, qtype, status)
        if qtype == "MX":
            return Lookup(qname, qtype, status, (record,), (MX(10, record),))
        return Lookup(qname, qtype, status, (record,))

    form = classify_helo(helo_text)
    a, aaaa, mx = (
        mk(name, "A", ha, "192.0.2.7"),
        mk(name, "AAAA", haaaa, "2001:db8::7"),
        mk(name, "MX", hmx, "mx.example.org"),
    )
    helo = evaluate_helo(form, a, aaaa, mx) if form.needs_lookup else evaluate_helo(form)
    if form.needs_lookup and helo.result in (Result.FAIL, Result.PERMERROR) and helo.reason != "underscore":
        assert Status.NXDOMAIN in (ha, haaaa, hmx) or not any(s.temporary for s in (ha, haaaa, hmx))
    sform = parse_reverse_path(sender)
    s_mx = mk("example.org", "MX", smx, "mx.example.org")
    s_a, s_aaaa = mk("example.org", "A", sa, "192.0.2.8"), mk("example.org", "AAAA", saaaa, "2001:db8::8")
    sender_result = evaluate_sender(sform, s_mx, s_a, s_aaaa) if sform.needs_lookup else evaluate_sender(sform)
    if sform.needs_lookup and sender_result.result in (Result.FAIL, Result.PERMERROR):
        assert smx in (Status.ANSWER, Status.NXDOMAIN) or not any(s.temporary for s in (smx, sa, saaaa))

    report = Report(
        IP,
        iprev,
        helo_text,
        helo,
        evaluate_alignment(form, IP, iprev, a, aaaa),
        sform.address or None,
        sform.domain or None,
        sender_result,
        evaluate_generic(iprev),
    )
    for profile in BUILTIN.values():
        decision = decide(report, profile)
        if decision.cause is not None and decision.cause.result is Result.TEMPERROR:
            assert decision.reply is not None and decision.reply.code < 500
        for verdict in decision.verdicts:
            if verdict.outcome.result is Result.TEMPERROR and verdict.reply is not None:
                assert verdict.reply.code < 500, (profile.name, verdict)
