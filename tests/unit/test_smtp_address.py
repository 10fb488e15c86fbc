"""The gateway's fast MAIL/RCPT address parser gives exactly what aiosmtpd's parser gives."""

from __future__ import annotations

import re

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from rdnsgate.frontends.smtp_proxy import GatewaySMTP

atext = st.text(alphabet="abcXYZ019!#$%&'*+/=?^_`{|}~-", min_size=1, max_size=6)
local = st.lists(atext, min_size=1, max_size=3).map(".".join)
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,5}[a-z0-9])?", fullmatch=True)
domain = st.lists(label, min_size=1, max_size=3).map(".".join)
rest = st.sampled_from(["", " SIZE=100", "  BODY=8BITMIME", "\tSMTPUTF8", " x y"])
noise = st.text(alphabet='<>@." \\ab,:()[]', max_size=12)
TRAILING_DOT = re.compile(r"<([^<>@\s]+@[^<>@\s.](?:[^<>@\s]*[^<>@\s.])?)\.>((?:[ \t].*)?)", re.S)


def slow(arg: str) -> tuple[str | None, str | None]:
    try:
        return SMTP._getaddr(SMTP.__new__(SMTP), arg)
    except Exception:  # aiosmtpd's own parser crashes on some junk; ours says "malformed"
        return None, None


def fast(arg: str) -> tuple[str | None, str | None]:
    server = GatewaySMTP.__new__(GatewaySMTP)
    return server._getaddr(arg)


@settings(max_examples=500)
@given(local, domain, rest)
def test_plain_addresses_parse_the_same(local_part: str, domain_part: str, tail: str) -> None:
    arg = f"<{local_part}@{domain_part}>{tail}"
    assert fast(arg) == slow(arg)


@settings(max_examples=500)
@given(st.one_of(noise, st.builds(lambda a, b: f"<{a}@{b}>", noise, noise)))
def test_anything_else_parses_the_same(arg: str) -> None:
    """Except one trailing dot after the domain, which the gateway takes as Postfix does."""
    expected = slow(arg)
    dotted = TRAILING_DOT.fullmatch(arg)
    if expected == (None, None) and dotted is not None:
        address, rest = slow(f"<{dotted[1]}>{dotted[2]}")
        expected = (address + "." if address else None, rest if address else None)
    assert fast(arg) == expected


@given(local, domain, rest)
def test_a_trailing_dot_after_the_domain_is_taken(local_part: str, domain_part: str, tail: str) -> None:
    assert fast(f"<{local_part}@{domain_part}.>{tail}") == (f"{local_part}@{domain_part}.", tail.lstrip())
