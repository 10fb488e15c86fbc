"""Settings: file < environment < flags; unknown keys and wrong types name the key."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.config import SECTIONS, describe, load_settings
from rdnsgate.errors import ConfigError


def test_defaults_file_env_flags(tmp_path: Path) -> None:
    path = tmp_path / "rdnsgate.toml"
    path.write_text('[gateway]\nprofile = "strict"\nlisten = ["127.0.0.1:25", "[::1]:25"]\n[dns]\ntimeout = 1\n')
    settings = load_settings(
        path, env={"RDNSGATE_DNS_TRIES": "5", "RDNSGATE_GATEWAY_RELAY_DOMAINS": "a.example, b.example"}
    )
    assert settings.gateway.profile == "strict" and settings.gateway.listen == ("127.0.0.1:25", "[::1]:25")
    assert settings.dns.timeout == 1.0 and settings.dns.tries == 5
    assert settings.gateway.relay_domains == ("a.example", "b.example")
    flagged = load_settings(path, env={}, overrides={"gateway": {"profile": "monitor", "next_hop": None}})
    assert flagged.gateway.profile == "monitor"
    assert "[gateway]" in describe(flagged) and 'profile = "monitor"' in describe(flagged)


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("[gateway]\nprofle = 'x'\n", {}, "unknown key 'profle'"),
        ("[gatewy]\n", {}, "unknown section"),
        ("[dns]\ntimeout = 'soon'\n", {}, "dns.timeout: expected float"),
        ("[dns]\ntries = 0\n", {}, "dns.tries must be greater than 0"),
        ("[gateway]\ntls_cert = 'a.pem'\n", {}, "must be given together"),
        ("", {"RDNSGATE_DNS_TRIES": "many"}, "environment RDNSGATE_DNS_TRIES"),
        ("", {"RDNSGATE_NOPE_X": "1"}, "no such section"),
        ("not toml = = 1", {}, "not valid TOML"),
        ("[web]\nlisten = '8080'\n", {}, "web.listen '8080': write HOST:PORT"),
        ("[web]\ntrusted_proxies = ['10.0.0.0/33']\n", {}, "web.trusted_proxies: '10.0.0.0/33'"),
        ("[web]\npublic_url = 'rdns.example'\n", {}, "web.public_url must start with http"),
        ("[monitor]\njitter = 1.5\n", {}, "monitor.jitter must be between 0 and 1"),
        ("[monitor]\ninterval = 0\n", {}, "monitor.interval must be greater than 0"),
        ("[monitor]\nwebhook_url = 'ftp://x'\n", {}, "monitor.webhook_url must start with http"),
        ("", {"RDNSGATE_MONITOR_CONFIRMATIONS": "0"}, "monitor.confirmations must be greater than 0"),
        ("[gateway]\ntrusted_proxies = ['10.0.0.0/33']\n", {}, "gateway.trusted_proxies: '10.0.0.0/33' is not"),
        ("[gateway]\nrelay_domains = ['exa mple.org']\n", {}, "gateway.relay_domains: 'exa mple.org' is not"),
        ("[gateway]\nrelay_domains = ['-x.example']\n", {}, "gateway.relay_domains: '-x.example' is not"),
        ("[gateway]\nlisten = ['localhost']\n", {}, "gateway.listen 'localhost': write HOST:PORT"),
        ("[policy]\nlisten = ['10040']\n", {}, "policy.listen '10040': write HOST:PORT"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, env: dict[str, str], message: str) -> None:
    path = tmp_path / "rdnsgate.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_settings(path, env=env)


def test_refusals_link_to_the_public_check_page(tmp_path: Path) -> None:
    path = tmp_path / "rdnsgate.toml"
    path.write_text("[web]\npublic_url = 'https://rdns.example/'\n")
    settings = load_settings(path, env={})
    assert settings.gateway.check_url == settings.policy.check_url == "https://rdns.example/check"
    path.write_text("[web]\npublic_url = 'https://rdns.example'\n[policy]\ncheck_url = 'https://help.example/rdns'\n")
    settings = load_settings(path, env={})
    assert settings.policy.check_url == "https://help.example/rdns"  # an explicit one wins
    assert load_settings(None, env={}).gateway.check_url == ""


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40),
    st.lists(st.text(max_size=20), max_size=3),
)
def test_config_show_round_trips(footer: str, overrides: list[str]) -> None:
    """`config show` is TOML that loads back to the same settings, whatever the strings hold (quotes, newlines)."""
    settings = load_settings(None, env={}, overrides={"gateway": {"reject_footer": footer}})
    settings = dataclasses.replace(settings, policy=dataclasses.replace(settings.policy, overrides=tuple(overrides)))
    data = tomllib.loads(describe(settings))
    assert data["gateway"]["reject_footer"] == footer
    assert data["policy"]["overrides"] == overrides
    assert set(data) == set(SECTIONS)
