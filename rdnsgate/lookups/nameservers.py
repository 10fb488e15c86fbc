"""Which resolvers to ask: ``HOST[:PORT]`` strings from config, or the system's.

A nameserver must be an IP address (a resolver cannot be found by name
without a resolver).  Forms: ``192.0.2.53``, ``192.0.2.53:5353``, ``::1``,
``[::1]:5353``.  The system's resolvers are the ``nameserver`` lines of
resolv.conf(5).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from pathlib import Path

from rdnsgate.errors import UsageError
from rdnsgate.lookups.transport import Nameserver

RESOLV_CONF = Path("/etc/resolv.conf")


def parse_nameserver(text: str) -> Nameserver:
    """Parse ``HOST[:PORT]``; raises UsageError naming what is wrong."""
    value = text.strip()
    host, port = value, 53
    if value.startswith("["):
        inner, sep, rest = value[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise UsageError(f"nameserver {text!r}: write an IPv6 address with a port as [ADDRESS]:PORT")
        host = inner
        if rest:
            port = _port(text, rest[1:])
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
        port = _port(text, port_text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise UsageError(f"nameserver {text!r}: {host!r} is not an IP address") from None
    return Nameserver(str(address), port)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError(f"nameserver {text!r}: port must be a number from 1 to 65535")
    return int(port_text)


def system_nameservers(path: Path = RESOLV_CONF) -> list[Nameserver]:
    """The ``nameserver`` lines of resolv.conf; raises UsageError when there are none."""
    servers = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read {path} ({exc.strerror}); give --nameserver") from None
    for line in lines:
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            try:
                servers.append(parse_nameserver(fields[1].split("%", 1)[0]))
            except UsageError:
                continue
    if not servers:
        raise UsageError(f"{path} names no nameserver; give --nameserver")
    return servers


def resolve_nameservers(given: Iterable[str]) -> list[Nameserver]:
    """The configured nameservers, or the system's when none are configured."""
    configured = [parse_nameserver(item) for item in given]
    return configured or system_nameservers()
