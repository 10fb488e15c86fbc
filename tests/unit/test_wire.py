"""The wire codec against dnspython as an oracle, on generated messages."""

from __future__ import annotations

import contextlib
import ipaddress
import struct

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rdnsgate.checks.names import reverse_pointer
from rdnsgate.lookups.wire import (
    SOA,
    TYPES,
    WireError,
    decode_reply,
    decodes_unchanged,
    encode_name,
    encode_query,
    encode_question,
    only_record,
    question_key,
    reverse_question_v4,
)

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
names = st.lists(label, min_size=1, max_size=5).map(".".join)
ipv4 = st.ip_addresses(v=4).map(str)
ipv6 = st.ip_addresses(v=6).map(str)


@given(names, st.sampled_from(["A", "AAAA", "PTR", "MX"]), st.integers(0, 65535))
def test_query_parses_in_dnspython(name: str, rtype: str, qid: int) -> None:
    wire = encode_query(qid, encode_question(name, TYPES[rtype]))
    message = dns.message.from_wire(wire)
    assert message.id == qid
    assert message.question[0].name == dns.name.from_text(name)
    assert message.question[0].rdtype == dns.rdatatype.from_text(rtype)
    assert message.edns == 0 and message.payload == 1232


@settings(max_examples=200)
@given(
    qname=names,
    ptrs=st.lists(names, min_size=0, max_size=6, unique=True),
    addrs=st.lists(ipv4, max_size=4, unique=True),
    addrs6=st.lists(ipv6, max_size=3, unique=True),
    rcode=st.sampled_from([dns.rcode.NOERROR, dns.rcode.NXDOMAIN, dns.rcode.SERVFAIL]),
    soa_min=st.integers(0, 86400),
    ttl=st.integers(0, 2**31 - 1),
)
def test_reply_decodes_like_dnspython(
    qname: str, ptrs: list[str], addrs: list[str], addrs6: list[str], rcode: int, soa_min: int, ttl: int
) -> None:
    query = dns.message.make_query(qname, "PTR")
    reply = dns.message.make_response(query)
    reply.set_rcode(rcode)
    owner = dns.name.from_text(qname)
    if ptrs:
        reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", "PTR", *[p + "." for p in ptrs]))
    if addrs:
        reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", "A", *addrs))
    if addrs6:
        reply.answer.append(dns.rrset.from_text(owner, ttl, "IN", "AAAA", *addrs6))
    reply.authority.append(dns.rrset.from_text(owner, 300, "IN", "SOA", f"ns.{qname}. h.{qname}. 7 1 1 1 {soa_min}"))
    wire = reply.to_wire()
    ours = decode_reply(wire)
    assert ours.qid == reply.id and ours.rcode == rcode and ours.qname == qname
    assert decodes_unchanged(qname)
    assert decode_reply(wire, qname) == ours  # the question's name taken as asked (the audit's path)
    assert sorted(rr.data for rr in ours.answer if rr.rtype == 12) == sorted(ptrs)  # type: ignore[type-var]
    assert sorted(rr.data for rr in ours.answer if rr.rtype == 1) == sorted(addrs)  # type: ignore[type-var]
    assert sorted(rr.data for rr in ours.answer if rr.rtype == 28) == sorted(  # type: ignore[type-var]
        str(ipaddress.IPv6Address(a)) for a in addrs6
    )
    soa = ours.authority[0].data
    assert isinstance(soa, SOA) and soa.minimum == soa_min and soa.serial == 7
    assert all(rr.ttl == (ttl & 0x7FFFFFFF) for rr in ours.answer)


any_name = st.lists(st.text(st.sampled_from("aZ09-_.\\ é*"), min_size=1, max_size=8), min_size=1, max_size=4).map(
    ".".join
)


@given(any_name)
@example("\\900")  # an escape beyond an octet: found by this test, once, in CI
def test_a_name_decodes_unchanged_only_when_it_does(name: str) -> None:
    """`decodes_unchanged` may let a reply's question go unread only when reading it would give `name`."""
    try:
        wire = encode_query(1, encode_question(name, 1))
    except WireError:
        assert not decodes_unchanged(name)
        return
    reply = dns.message.make_response(dns.message.from_wire(wire)).to_wire()
    if decodes_unchanged(name):
        assert decode_reply(reply).qname == name
        assert decode_reply(reply, name) == decode_reply(reply)


@given(st.lists(st.text("ab9-", min_size=0, max_size=70), min_size=1, max_size=6).map(".".join))
@example("a" * 63 + ".b")
@example("a" * 64 + ".b")
@example(".".join(["a" * 63] * 4))  # 255 bytes in wire form: one too many
@example("a..b")
@example(".a")
def test_a_plain_name_is_encoded_as_dnspython_encodes_it(name: str) -> None:
    """Labels of letters, digits and hyphens (the fast path of `encode_name`): dnspython's wire form, or a
    WireError for an empty or over-long label or name (trailing dot optional)."""
    try:
        expected = dns.name.from_text(name).to_wire()
    except (dns.name.EmptyLabel, dns.name.LabelTooLong, dns.name.NameTooLong):
        with pytest.raises(WireError):
            encode_name(name)
        return
    assert encode_name(name) == expected


@given(st.ip_addresses(v=4))
@example(ipaddress.IPv4Address("0.0.0.0"))
@example(ipaddress.IPv4Address("255.255.255.255"))
@example(ipaddress.IPv4Address("10.100.9.199"))
def test_the_reverse_question_from_the_table_is_the_encoded_reverse_name(ip: ipaddress.IPv4Address) -> None:
    """The audit's PTR question made from the address (`reverse_question_v4`) is the general encoder's, of
    a name that `decodes_unchanged` (so a reply's question need not be read back), as dnspython makes it."""
    name = reverse_pointer(ip)
    assert reverse_question_v4(ip.packed) == encode_question(name, TYPES["PTR"])
    assert decodes_unchanged(name)
    query = dns.message.make_query(dns.name.from_text(name), "PTR").to_wire()
    assert reverse_question_v4(ip.packed) == query[12:]


def test_odd_bytes_in_names_are_escaped() -> None:
    query = dns.message.make_query("12.2.0.192.in-addr.arpa", "PTR")
    reply = dns.message.make_response(query)
    target = dns.name.Name([b"<script>x y", b"a.b", b"example", b""])
    reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "PTR", target.to_text()))
    ours = decode_reply(reply.to_wire())
    assert ours.answer[0].data == "<script>x\\032y.a\\046b.example"


def test_mx_and_null_mx() -> None:
    query = dns.message.make_query("example.org", "MX")
    reply = dns.message.make_response(query)
    reply.answer.append(dns.rrset.from_text("example.org.", 60, "IN", "MX", "0 .", "10 Mail.Example.org."))
    ours = decode_reply(reply.to_wire())
    assert sorted(rr.data for rr in ours.answer) == [(0, ""), (10, "mail.example.org")]  # type: ignore[type-var]


@given(st.binary(max_size=600))
def test_garbage_never_crashes(data: bytes) -> None:
    for function in (decode_reply, question_key):
        with contextlib.suppress(WireError):
            function(data)


def test_compression_loop_is_rejected() -> None:
    header = bytes([0, 1, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0])
    looping = header + bytes([0xC0, 12, 0, 1, 0, 1])  # a pointer to itself
    with pytest.raises(WireError):
        decode_reply(looping)


def test_question_key_matches_reply_to_query() -> None:
    question = encode_question("Mail.Example.ORG", 1)
    wire = encode_query(4242, question)
    reply = dns.message.make_response(dns.message.from_wire(wire)).to_wire()
    assert question_key(reply) == question_key(wire) == (4242, question.lower())


def test_bad_names_are_refused() -> None:
    with pytest.raises(WireError):
        encode_question("a" * 64 + ".example", 1)
    with pytest.raises(WireError):
        encode_question(".".join(["abcdefgh"] * 40), 1)
    with pytest.raises(WireError):
        encode_question("a..b", 1)


# -- only_record: the audit's reading of a one-record reply without decoding it --------------------------------

rtypes = st.sampled_from([TYPES["A"], TYPES["AAAA"], TYPES["PTR"], TYPES["CNAME"], TYPES["MX"], 99])
raw_labels = st.binary(min_size=1, max_size=12) | label.map(str.encode)


@st.composite
def one_record_replies(draw: st.DrawFn) -> tuple[bytes, str, int, int]:
    """A reply of one question and one answer record, well formed, with at most one part changed that
    `only_record` must notice: the rcode, TC, the counts, the owner (a name, not a pointer to the question),
    the class, the type, the data (wrongly sized; a name compressed or running past its length), an
    authority record; and what follows (EDNS, a stray byte), which neither reader looks at."""
    asked = draw(names)
    qtype = draw(rtypes)
    question = encode_question(asked, qtype)
    change = draw(st.sampled_from([None, "rcode", "tc", "ancount", "nscount", "owner", "class", "type", "data"]))
    rcode = draw(st.sampled_from([2, 3, 5])) if change == "rcode" else 0
    flags = 0x8000 | 0x0100 | rcode | (0x0200 if change == "tc" else 0)
    ancount = draw(st.sampled_from([0, 2])) if change == "ancount" else 1
    nscount = 1 if change == "nscount" else 0
    rtype = (
        draw(st.sampled_from([TYPES["CNAME"], TYPES["A"], 99]).filter(lambda t: t != qtype))
        if change == "type"
        else qtype
    )
    owner = draw(st.sampled_from([encode_name_of(asked), b"\x01x\x00"])) if change == "owner" else b"\xc0\x0c"
    rclass = 3 if change == "class" else 1
    if rtype == TYPES["A"]:
        data = draw(st.binary(max_size=6)) if change == "data" else draw(st.binary(min_size=4, max_size=4))
    elif rtype == TYPES["AAAA"]:
        data = draw(st.binary(max_size=18)) if change == "data" else draw(st.binary(min_size=16, max_size=16))
    else:
        wire_labels = draw(st.lists(raw_labels, min_size=1, max_size=4))
        end = draw(st.sampled_from([b"\xc0\x0c", b"", b"\x05ab"])) if change == "data" else b"\x00"
        data = b"".join(bytes([len(part)]) + part for part in wire_labels) + end
    rdlength = len(data) + (draw(st.sampled_from([0, -1, 1])) if change == "data" else 0)
    record = owner + struct.pack("!HHIH", rtype, rclass, draw(st.integers(0, 2**32 - 1)), max(rdlength, 0)) + data
    authority = (b"\xc0\x0c" + struct.pack("!HHIH", 2, 1, 60, 2) + b"\xc0\x0c") * nscount
    tail = draw(st.sampled_from([b"", b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0), b"\xff"]))
    header = struct.pack("!6H", draw(st.integers(0, 65535)), flags, 1, ancount, nscount, 0)
    return header + question + record * ancount + authority + tail, asked, qtype, 12 + len(question)


def encode_name_of(name: str) -> bytes:
    return encode_question(name, 1)[:-4]


@settings(max_examples=500)
@given(one_record_replies())
def test_only_record_is_what_decoding_the_reply_gives(case: tuple[bytes, str, int, int]) -> None:
    wire, asked, qtype, answer_at = case
    data = only_record(wire, answer_at, qtype)
    if data is None:
        return  # the caller decodes the reply as usual
    reply = decode_reply(wire, asked)
    assert reply.rcode == 0 and not reply.truncated and reply.authority == ()
    assert [(rr.name, rr.rtype, rr.data) for rr in reply.answer] == [(asked, qtype, data)]


@given(names, st.sampled_from(["A", "AAAA", "PTR"]), ipv4, ipv6, names)
def test_only_record_reads_what_a_server_sends(asked: str, rtype: str, v4: str, v6: str, target: str) -> None:
    """The common replies (dnspython's encoding, with EDNS) are taken, not left to the decoder."""
    query = dns.message.make_query(asked, rtype, use_edns=0)
    reply = dns.message.make_response(query)
    value = {"A": v4, "AAAA": v6, "PTR": target + "."}[rtype]
    reply.answer.append(dns.rrset.from_text(dns.name.from_text(asked), 60, "IN", rtype, value))
    wire = reply.to_wire()
    expected = {"A": v4, "AAAA": str(ipaddress.IPv6Address(v6)), "PTR": target}[rtype]
    assert only_record(wire, 12 + len(encode_question(asked, TYPES[rtype])), TYPES[rtype]) == expected


@given(st.floats(0.001, 60), st.integers(0, 9), st.floats(0, 1, exclude_max=True))
def test_a_tries_wait_is_its_timeout_grown_by_half_each_retry_within_ten_percent(timeout, attempt, draw) -> None:  # type: ignore[no-untyped-def]
    """`try_wait`, which both clients (transport.py, bulk.py) use for every try, whatever the generator draws."""
    from rdnsgate.lookups import transport

    base = timeout * (1 + 0.5 * attempt)
    saved = transport._random
    transport._random = lambda: draw
    try:
        wait = transport.try_wait(timeout, attempt)
    finally:
        transport._random = saved
    assert 0.9 * base <= wait <= 1.1 * base


def test_tries_asked_together_wait_different_times() -> None:
    from rdnsgate.lookups.transport import try_wait

    assert len({try_wait(2.0, 0) for _ in range(20)}) > 1


@pytest.mark.parametrize("name", ["\\256.example", "a\\900b.example", "\\999"])
def test_an_escape_beyond_an_octet_is_a_wire_error(name: str) -> None:
    """RFC 1035 §5.1: \\DDD is one octet; a larger number is a name that cannot be asked (a WireError, which
    every caller turns into an error outcome), not a crash."""
    with pytest.raises(WireError, match="is not an octet"):
        encode_name(name)
