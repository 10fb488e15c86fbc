"""Who is asking: the client address of an HTTP request, believing proxies only when configured.

Pure.  `X-Forwarded-For` and `Forwarded` (RFC 7239) are read only when the
connecting peer is a trusted proxy; then the hops are walked from the right
(the nearest proxy's entry) and the first address that is not itself a
trusted proxy is the client.  Anything unreadable stops the walk there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> list[Network]:
    """IPs and CIDRs; raises ValueError naming the bad one."""
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an IP address or network") from None
    return out


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = text.strip().strip('"')
    if value.startswith("["):  # [2001:db8::1]:4711
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:  # 192.0.2.1:4711
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def _trusted(address: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Sequence[Network]) -> bool:
    return any(address.version == net.version and address in net for net in trusted)


def forwarded_hops(headers: Iterable[tuple[str, str]]) -> list[str]:
    """The `for=` hops of `Forwarded`, else the entries of `X-Forwarded-For`, in order."""
    forwarded: list[str] = []
    x_forwarded: list[str] = []
    for name, value in headers:
        lower = name.lower()
        if lower == "forwarded":
            for element in value.split(","):
                for pair in element.split(";"):
                    key, _, hop = pair.strip().partition("=")
                    if key.strip().lower() == "for":
                        forwarded.append(hop)
        elif lower == "x-forwarded-for":
            x_forwarded.extend(item for item in value.split(",") if item.strip())
    return forwarded or x_forwarded


def client_address(peer: str, headers: Iterable[tuple[str, str]], trusted: Sequence[Network]) -> str:
    """The client's IP address as text."""
    current = _address(peer)
    if current is None:
        return peer
    if not trusted or not _trusted(current, trusted):
        return str(current)
    for hop in reversed(forwarded_hops(headers)):
        address = _address(hop)
        if address is None:
            break
        current = address
        if not _trusted(address, trusted):
            break
    return str(current)
