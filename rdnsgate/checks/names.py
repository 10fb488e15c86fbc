"""Host-name and address syntax: RFC 1123 names, RFC 5321 address literals, IDNA.

Pure functions on strings; no DNS, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import idna

from rdnsgate.model import IPAddress

MAX_NAME = 253
MAX_LABEL = 63

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"(?:{_LABEL}\.)*{_LABEL}\Z")
_LABEL_UNDERSCORE = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOSTNAME_UNDERSCORE = re.compile(rf"(?:{_LABEL_UNDERSCORE}\.)*{_LABEL_UNDERSCORE}\Z")


def normalize(name: str) -> str:
    """Lower-case and drop one trailing dot: ``Mail.Example.ORG.`` -> ``mail.example.org``."""
    name = name.lower()
    return name[:-1] if name.endswith(".") else name


def is_hostname(name: str) -> bool:
    """True for an RFC 1123 host name (after `normalize`), one label or more.

    LDH labels of 1 to 63 characters, no leading or trailing hyphen, at most
    253 characters in all, and a top-level label that is not all digits (so
    that ``192.0.2.1`` is no host name).
    """
    if not name or len(name) > MAX_NAME or not _HOSTNAME.match(name):
        return False
    return not name.rpartition(".")[2].isdigit()


def is_postfix_hostname(name: str) -> bool:
    """A host name as Postfix's ``valid_hostname()`` takes it: RFC 1123, but `_` allowed in labels.

    DNS itself allows `_`; many PTR and HELO names in the wild carry one, and
    Postfix looks them up like any other name.
    """
    if not name or len(name) > MAX_NAME or not _HOSTNAME_UNDERSCORE.match(name):
        return False
    return not name.rpartition(".")[2].isdigit()


def is_fqdn(name: str) -> bool:
    """A host name with at least two labels."""
    return is_hostname(name) and "." in name


@functools.lru_cache(maxsize=4096)  # pure: the same clients come again and again
def parse_ip(text: str) -> IPAddress:
    """Parse an IP address; an IPv4-mapped IPv6 address becomes IPv4.

    Raises ValueError for anything else.
    """
    ip = ipaddress.ip_address(text.strip())
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_bare_ip(text: str) -> bool:
    """An IP address written without the brackets of an address literal."""
    try:
        parse_ip(text)
    except ValueError:
        return False
    return True


def parse_address_literal(text: str) -> IPAddress | None:
    """Parse ``[192.0.2.1]`` or ``[IPv6:2001:db8::1]`` (RFC 5321 §4.1.3).

    Returns None when `text` is not bracketed; raises ValueError when it is
    bracketed but not a valid literal.
    """
    if not (text.startswith("[") and text.endswith("]")):
        return None
    inner = text[1:-1]
    if inner[:5].lower() == "ipv6:":
        ip6 = ipaddress.IPv6Address(inner[5:])
        return ip6.ipv4_mapped or ip6
    return ipaddress.IPv4Address(inner)


def to_ascii_domain(domain: str) -> str:
    """A domain in A-labels (IDNA 2008 with UTS #46 mapping), normalised.

    Raises ValueError with the reason when the domain cannot be encoded.
    """
    domain = normalize(domain.strip())
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"not a valid internationalised domain name: {exc}") from exc


def reverse_pointer(ip: IPAddress) -> str:
    """The in-addr.arpa / ip6.arpa name of `ip`, without the trailing dot."""
    if ip.version == 4:
        a, b, c, d = ip.packed
        return f"{d}.{c}.{b}.{a}.in-addr.arpa"
    return ip.reverse_pointer
