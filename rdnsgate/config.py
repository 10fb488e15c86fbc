"""Typed settings with their defaults and meaning, validated where they are made.

The one place that says what can be configured.  The CLI builds these from
its options; every other layer receives them and reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from rdnsgate.errors import ConfigError


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How rdnsgate asks DNS questions."""

    nameservers: tuple[str, ...] = ()  # HOST[:PORT]; empty: the system's resolvers
    timeout: float = 2.0  # seconds for the first try; each retry waits half as long again
    tries: int = 3  # tries per question, rotating over the nameservers
    max_inflight: int = 100  # questions on the wire at once
    cache_size: int = 50_000  # cached answers (0: no cache)
    max_cnames: int = 8  # CNAME hops followed before giving up
    default_negative_ttl: int = 300  # cache time of a negative answer that carries no SOA

    def __post_init__(self) -> None:
        _positive("dns.timeout", self.timeout)
        _positive("dns.tries", self.tries)
        _positive("dns.max_inflight", self.max_inflight)
        _at_least("dns.cache_size", self.cache_size, 0)
        _at_least("dns.max_cnames", self.max_cnames, 0)
        _at_least("dns.default_negative_ttl", self.default_negative_ttl, 0)


@dataclass(frozen=True, slots=True)
class CheckSettings:
    """How the checks run."""

    max_ptr_names: int = 10  # PTR names examined per client IP
    deadline: float = 20.0  # seconds one evaluation may take in all

    def __post_init__(self) -> None:
        _positive("checks.max_ptr_names", self.max_ptr_names)
        _positive("checks.deadline", self.deadline)


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise ConfigError(f"{key} must be greater than 0, not {value!r}")


def _at_least(key: str, value: float, low: float) -> None:
    if value < low:
        raise ConfigError(f"{key} must be at least {low}, not {value!r}")
