"""The Exim face's request line: Exim's ${quote:} read back exactly, and what a request must carry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.frontends.exim_socket import parse_request, policy_request, quote

names = st.from_regex(r"[a-z_][a-z0-9_]{0,10}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(st.dictionaries(names, values, max_size=6))
def test_quoted_pairs_read_back_exactly(pairs: dict[str, str]) -> None:
    line = " ".join(f"{name}={quote(value)}" for name, value in pairs.items()) + "\n"
    assert parse_request(line) == pairs


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("mail.example.org", "mail.example.org"), ("", '""'), ('"a b"@x', '"\\"a b\\"@x"'), ("a\\b", '"a\\\\b"')],
)
def test_quote_as_exim_does(value: str, quoted: str) -> None:
    assert quote(value) == quoted


@pytest.mark.parametrize("line", ['ip="open', "=x", 'ip=1 "x"', "ip=1\x00 junk!", 'ip="a"b'])
def test_unreadable_lines(line: str) -> None:
    with pytest.raises(ValueError, match="cannot read"):
        parse_request(line)


def test_names_are_case_insensitive_and_unknown_ones_kept_aside() -> None:
    assert parse_request("IP=192.0.2.1 Extra=1") == {"ip": "192.0.2.1", "extra": "1"}


def test_policy_request() -> None:
    request = policy_request({"ip": "192.0.2.1", "port": "4000", "helo": "h.example", "sender": "", "rcpt": "a@b"})
    assert request == {
        "instance": "exim:192.0.2.1:4000",
        "client_address": "192.0.2.1",
        "protocol_state": "RCPT",
        "helo_name": "h.example",
        "sender": "",
        "recipient": "a@b",
    }
    assert policy_request({"ip": "192.0.2.1", "stage": "EHLO"})["protocol_state"] == "HELO"
    assert "sender" not in policy_request({"ip": "192.0.2.1", "stage": "helo"})
    with pytest.raises(ValueError, match="no ip="):
        policy_request({"helo": "x"})
    with pytest.raises(ValueError, match="stage="):
        policy_request({"ip": "192.0.2.1", "stage": "quit"})
