"""Refusal links: signed for one IP and one check, good for link_hours; who may ask for an exception."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.config import ExceptionSettings
from rdnsgate.policy.exceptions import LinkClaim, LinkSigner, refusal_of

SIGNER = LinkSigner(b"k" * 32)
NOW = 1_800_000_000


@given(st.ip_addresses().map(str), st.sampled_from(["iprev", "helo", "sender", "generic"]))
def test_a_token_verifies_only_for_its_ip_key_and_time(ip: str, check: str) -> None:
    token = SIGNER.sign(ip, check, NOW)
    assert len(token) < 60 and token.replace(".", "").replace("-", "").replace("_", "").isalnum()
    claim = SIGNER.verify(token, ip, NOW + 3600, 48)
    assert claim is not None and (claim.ip, claim.check, claim.at) == (ip, check, NOW)
    other = "198.51.100.254" if ip != "198.51.100.254" else "198.51.100.253"
    assert SIGNER.verify(token, other, NOW, 48) is None  # only for its IP
    assert LinkSigner(b"another key").verify(token, ip, NOW, 48) is None
    assert SIGNER.verify(token, ip, NOW + 48 * 3600 + 1, 48) is None  # expired
    assert SIGNER.verify(token, ip, NOW - 3600, 48) is None  # from the future


@pytest.mark.parametrize("token", ["", "x", "1.iprev.a", "abc.iprev.a.b", "1.iprev.a.b.c", "9" * 300])
def test_malformed_tokens(token: str) -> None:
    assert SIGNER.verify(token, "192.0.2.1", NOW, 48) is None


def test_tampering_with_any_part_breaks_it() -> None:
    at, check, nonce, mac = SIGNER.sign("192.0.2.1", "iprev", NOW).split(".")
    for changed in (f"{int(at) + 1}.{check}.{nonce}.{mac}", f"{at}.helo.{nonce}.{mac}", f"{at}.{check}.x{nonce}.{mac}"):
        assert SIGNER.verify(changed, "192.0.2.1", NOW, 48) is None


def test_who_may_ask() -> None:
    claim = LinkClaim("192.0.2.1", "iprev", NOW, "abc")
    settings = ExceptionSettings()
    assert refusal_of(claim, settings, "no-ptr", 0) is None
    assert "off" in (refusal_of(claim, ExceptionSettings(mode="off"), "no-ptr", 0) or "")
    assert "null MX" in (refusal_of(LinkClaim("192.0.2.1", "sender", NOW, "a"), settings, "null-mx", 0) or "")
    assert "cannot be excepted" in (refusal_of(claim, ExceptionSettings(checks=("helo",)), "no-ptr", 0) or "")
    assert "in the last 30 days" in (refusal_of(claim, settings, "no-ptr", 1) or "")
    assert refusal_of(claim, ExceptionSettings(per_ip=2), "no-ptr", 1) is None
