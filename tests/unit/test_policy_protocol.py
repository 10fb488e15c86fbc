"""The policy protocol parser, fed bytes in every split."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.frontends.policy_server import (
    MAX_ATTRIBUTES,
    MAX_LINE,
    ProtocolError,
    RequestParser,
    _Lines,
    _lines,
    attributes,
    reply,
)

REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\nclient_address=192.0.2.1\n"
    b"client_name=mail.example.org\nhelo_name=mail.example.org\nsender=bob@example.org\n"
    b"recipient=alice@example.net\ninstance=123.456.7\nccert_subject=\nfuture_attribute=x=y\n\n"
)


def parse_all(chunks: list[bytes]) -> list[dict[str, str]]:
    parser = RequestParser()
    out: list[dict[str, str]] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


@given(st.lists(st.integers(1, len(REQUEST) * 2 - 1), max_size=8))
def test_any_split_gives_the_same_requests(cuts: list[int]) -> None:
    data = REQUEST * 2
    points = sorted(set(cuts))
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    requests = parse_all(chunks)
    assert len(requests) == 2
    assert requests[0]["client_address"] == "192.0.2.1" and requests[0]["future_attribute"] == "x=y"
    assert requests[0]["ccert_subject"] == ""


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"a=" + b"x" * 600 + b"\n\n", "longer than 512"),
        (b"a=" + b"x" * 600 + b"\n", "longer than 512"),  # before the request is even complete
        (b"x" * 600, "longer than 512"),
        (b"".join(b"a%d=1\n" % i for i in range(MAX_ATTRIBUTES + 1)) + b"\n", "more than 100"),
        (b"".join(b"attribute_%03d=" % i + b"v" * 300 + b"\n" for i in range(60)) + b"\n", "larger than"),
        (b"no equals sign\n\n", "malformed"),
        (b"=value\n\n", "malformed"),
        (b"bad name=1\n\n", "malformed"),
    ],
)
def test_trouble_is_a_protocol_error(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_all([data])


def test_reply_format() -> None:
    assert reply("DUNNO") == b"action=DUNNO\n\n"


def each_line_alone(block: bytes) -> dict[str, str]:
    """The general way: every name and value decoded on its own."""
    return {
        name.decode("ascii"): value.decode("utf-8", "replace")
        for name, _, value in (line.partition(b"=") for line in block.split(b"\n"))
    }


names = st.from_regex(rb"\A[A-Za-z0-9_]{1,12}\Z")
values = st.binary(max_size=40).filter(lambda value: b"\n" not in value)


@given(st.lists(st.tuples(names, values), min_size=1, max_size=12))
def test_attributes_decoded_as_a_whole_as_each_alone(pairs: list[tuple[bytes, bytes]]) -> None:
    block = b"\n".join(name + b"=" + value for name, value in pairs)
    assert attributes(block) == each_line_alone(block)
    assert parse_all([block + b"\n\n"]) == [each_line_alone(block)]


WHOLE = re.compile(rb"(?:[A-Za-z0-9_]+=[^\n]*\n)*[A-Za-z0-9_]+=[^\n]*\Z")  # a well-formed request, in one regex


@given(st.lists(st.binary(max_size=12).filter(lambda line: b"\n" not in line), min_size=1, max_size=6))
def test_a_request_is_refused_exactly_when_a_line_is_not_name_value(lines: list[bytes]) -> None:
    block = b"\n".join(lines)
    if WHOLE.match(block) is None:
        with pytest.raises(ProtocolError, match="malformed line"):
            attributes(block)
    else:
        assert attributes(block) == each_line_alone(block)


def test_lines_seen_before_parse_as_new_ones() -> None:
    """The memo of lines seen before (a Postfix request repeats most of its lines) gives what a fresh parse
    gives, also across its clearing when full, and never keeps a malformed line."""
    known = b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nhelo_name=mx.example"
    for number in range(_Lines.KEPT + 50):
        block = known + b"\ninstance=%d\nrecipient=r%d@example.org" % (number, number)
        assert attributes(block) == each_line_alone(block)
        assert len(_lines) <= _Lines.KEPT
    for _ in range(2):
        with pytest.raises(ProtocolError, match="malformed line b'bad line'"):
            attributes(known + b"\nbad line")
    assert b"bad line" not in _lines


def test_a_long_line_is_refused_every_time_and_never_kept() -> None:
    """Lines are checked once, when first seen: one too long is never kept, so it is refused again; the
    order of the errors is the request's (too many lines, then a long line anywhere, then a malformed one)."""
    longest, too_long = b"x=" + b"a" * (MAX_LINE - 2), b"x=" + b"a" * (MAX_LINE - 1)
    for _ in range(2):
        with pytest.raises(ProtocolError, match=f"line longer than {MAX_LINE} bytes"):
            attributes(b"a=1\n" + too_long)
        with pytest.raises(ProtocolError, match=f"line longer than {MAX_LINE} bytes"):
            attributes(b"bad line\n" + too_long)
        assert attributes(longest) == {"x": "a" * (MAX_LINE - 2)}
    assert too_long not in _lines and longest in _lines
    with pytest.raises(ProtocolError, match="more than 100 attributes"):
        attributes(b"\n".join([b"a=1"] * 100 + [too_long]))
