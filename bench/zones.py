"""The benchmark's DNS data: a /16 reverse zone and its forward zone.

198.18.0.0/16 is RFC 2544's benchmarking range; it appears here only as DNS
data, never as an address anything is sent to.  About 10% of the addresses are
broken, in the three ways a real /16 is: no PTR, a PTR name with no A record,
and a PTR name whose A record points elsewhere.
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.harness.knot import Zone

NETWORK = ipaddress.ip_network("198.18.0.0/16")
FORWARD = "bench.example"


def host_name(ip: ipaddress.IPv4Address) -> str:
    return "h-" + str(ip).replace(".", "-")


def broken_kind(index: int) -> str | None:
    """Every tenth address is broken, cycling through three faults."""
    if index % 10 != 7:
        return None
    return ("no-ptr", "no-a", "mismatch")[(index // 10) % 3]


def zones() -> list[Zone]:
    reverse = Zone("18.198.in-addr.arpa")
    forward = Zone(FORWARD)
    for index, ip in enumerate(NETWORK):
        kind = broken_kind(index)
        owner = f"{ip.packed[3]}.{ip.packed[2]}"
        name = host_name(ip)
        if kind == "no-ptr":
            continue
        reverse.add(owner, "PTR", f"{name}.{FORWARD}.")
        if kind == "no-a":
            continue
        target = ip if kind != "mismatch" else ipaddress.IPv4Address("192.0.2.1")
        forward.add(name, "A", str(target))
    return [reverse, forward]
