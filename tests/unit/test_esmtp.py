"""The gateway's pure ESMTP details: DATA lines (no smuggling), enhanced codes, EHLO keywords, the next hop's offer."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.frontends.esmtp import content_line, ehlo_keywords, passed_on, with_enhanced_code
from rdnsgate.frontends.relay import Offer

LINE = st.binary(max_size=200).map(lambda body: body.replace(b"\r\n", b"") + b"\r\n")


@given(LINE)
def test_content_lines_end_in_crlf_and_hold_no_bare_cr_or_lf(raw: bytes) -> None:
    line, bare = content_line(raw)
    assert line.endswith(b"\r\n")
    parts = line.split(b"\r\n")
    assert parts[-1] == b"" and all(b"\r" not in part and b"\n" not in part for part in parts)
    body = raw[1:-2] if raw.startswith(b".") else raw[:-2]
    assert bare == (b"\r" in body or b"\n" in body)
    if not bare:
        assert line == (raw[1:] if raw.startswith(b".") else raw)


@given(st.lists(LINE, max_size=20))
def test_no_sequence_of_lines_makes_an_end_of_data(lines: list[bytes]) -> None:
    """Content re-stuffed for the next hop never holds CRLF.CRLF: the message cannot end early there."""
    content = b"".join(content_line(raw)[0] for raw in lines)
    wire = b"\r\n" + re.sub(rb"(?m)^\.", b"..", content)
    assert b"\r\n.\r\n" not in wire


@given(
    st.sampled_from(["250", "251", "421", "450", "451", "452", "500", "501", "502", "503", "550", "552", "554", "555"])
)
def test_enhanced_codes_are_added_once_and_match_the_class(code: str) -> None:
    status = with_enhanced_code(f"{code} some text")
    assert re.fullmatch(rf"{code} {code[0]}\.\d+\.\d+ some text", status), status
    assert with_enhanced_code(status) == status
    assert with_enhanced_code(f"{code} 5.7.1 kept") == f"{code} 5.7.1 kept"


def test_what_gets_no_enhanced_code() -> None:
    assert with_enhanced_code("354 End data with <CR><LF>.<CR><LF>") == "354 End data with <CR><LF>.<CR><LF>"
    assert with_enhanced_code("nonsense") == "nonsense"
    assert with_enhanced_code("250-PIPELINING") == "250-2.0.0 PIPELINING"  # continuation lines too (not EHLO's)


def test_ehlo_keywords_offer_no_more_than_the_next_hop() -> None:
    keywords, size = ehlo_keywords(26_214_400, 10_000_000, eightbit=False, smtputf8=True, dsn=False)
    assert size == 10_000_000 and keywords == ["PIPELINING", "SIZE 10000000", "SMTPUTF8", "ENHANCEDSTATUSCODES"]
    keywords, size = ehlo_keywords(26_214_400, None, eightbit=True, smtputf8=True, dsn=True)
    assert size == 26_214_400 and {"8BITMIME", "DSN", "SIZE 26214400"} <= set(keywords)


def test_offer_read_from_an_ehlo_reply() -> None:
    offer = Offer.from_ehlo(["PIPELINING", "SIZE 10240000", "VRFY", "ETRN", "STARTTLS", "8BITMIME", "DSN", "SMTPUTF8"])
    assert (offer.size, offer.eightbit, offer.smtputf8, offer.dsn) == (10_240_000, True, True, True)
    assert Offer.from_ehlo(["SIZE"]).size is None and not Offer.from_ehlo([]).dsn


def test_parameters_passed_on_as_written() -> None:
    written = ["SIZE=100", "RET=hdrs", "ENVID=Qq+2B", "FOO=bar", "SMTPUTF8"]
    assert passed_on(written, frozenset({"SIZE", "RET", "ENVID", "SMTPUTF8"})) == [
        "SIZE=100",
        "RET=hdrs",
        "ENVID=Qq+2B",
        "SMTPUTF8",
    ]
