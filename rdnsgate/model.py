"""The values every layer shares: DNS lookup outcomes, check results, reports.

Everything here is a frozen dataclass or an enum.  A DNS outcome is a value
(`Lookup`), never an exception: NXDOMAIN and NODATA are data, a timeout is a
temporary error with its cause.  Nothing in this module performs I/O.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Status(StrEnum):
    """How one DNS question was answered."""

    ANSWER = "answer"  # records of the asked type (possibly via CNAMEs)
    NXDOMAIN = "nxdomain"  # the name does not exist
    NODATA = "nodata"  # the name exists, no records of this type
    TIMEOUT = "timeout"  # no usable reply in time from any nameserver
    SERVFAIL = "servfail"  # the resolver could not find out
    REFUSED = "refused"  # the resolver would not answer
    ERROR = "error"  # malformed reply, CNAME loop, unexpected rcode

    @property
    def temporary(self) -> bool:
        """True when the answer says "could not find out", not "does not exist"."""
        return self not in _DEFINITE


_DEFINITE = frozenset({Status.ANSWER, Status.NXDOMAIN, Status.NODATA})


@dataclass(frozen=True, slots=True)
class MX:
    preference: int
    exchange: str  # normalised: lower case, no trailing dot; "" for the root (null MX)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of one DNS question, after CNAMEs were followed.

    `records` holds the answer's data as text: host names normalised (lower
    case, no trailing dot) for PTR, compressed addresses for A/AAAA.  MX data is
    in `mx`.  For NXDOMAIN/NODATA, `negative_ttl` is how long resolvers may
    keep the negative answer (RFC 2308: min of the SOA's TTL and MINIMUM) and
    `soa_zone` the zone that said so.  `detail` explains temporary errors.
    """

    qname: str
    qtype: str
    status: Status
    records: tuple[str, ...] = ()
    mx: tuple[MX, ...] = ()
    ttl: int = 0
    cnames: tuple[str, ...] = ()
    negative_ttl: int | None = None
    soa_zone: str | None = None
    detail: str = ""

    @property
    def temporary(self) -> bool:
        return self.status.temporary


class Result(StrEnum):
    """RFC 8601 result words."""

    PASS = "pass"
    FAIL = "fail"
    TEMPERROR = "temperror"
    PERMERROR = "permerror"
    NONE = "none"


class Check(StrEnum):
    IPREV = "iprev"
    HELO = "helo"
    HELO_ALIGN = "helo-align"
    SENDER = "sender"
    GENERIC = "generic"  # the PTR name looks like an ISP's default (checks/generic.py); logged, never refused


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's verdict: result word, machine reason, plain-words detail."""

    check: Check
    result: Result
    reason: str
    detail: str
    lookups: tuple[Lookup, ...] = ()

    @property
    def temporary(self) -> bool:
        return self.result is Result.TEMPERROR

    @property
    def failed(self) -> bool:
        return self.result in (Result.FAIL, Result.PERMERROR)


@dataclass(frozen=True, slots=True)
class ForwardName:
    """One PTR name and what its forward (A or AAAA) lookup said."""

    name: str
    lookup: Lookup
    confirms: bool


@dataclass(frozen=True, slots=True)
class IprevReport:
    """Forward-confirmed reverse DNS of one client IP, with its evidence."""

    ip: IPAddress
    result: CheckResult
    ptr: Lookup
    names: tuple[ForwardName, ...] = ()  # the examined names, in PTR order
    invalid_names: tuple[str, ...] = ()  # PTR data that is no valid host name
    omitted_names: tuple[str, ...] = ()  # valid names beyond max_ptr_names
    confirmed_name: str | None = None

    @property
    def shown_name(self) -> str | None:
        """The name to show for the client: the confirmed PTR name, else the first examined one."""
        return self.confirmed_name or (self.names[0].name if self.names else None)


@dataclass(frozen=True, slots=True)
class Report:
    """The whole chain for one client: IP -> PTR -> A/AAAA -> HELO -> sender.

    Every front end renders this same value.
    """

    ip: IPAddress
    iprev: IprevReport
    helo_name: str | None
    helo: CheckResult
    helo_align: CheckResult
    sender_address: str | None
    sender_domain: str | None
    sender: CheckResult
    generic: CheckResult  # from the PTR name alone (checks/generic.py)

    @property
    def checks(self) -> tuple[CheckResult, ...]:
        """Every check's result, in Postfix's restriction order, `generic` last (derived, never stored)."""
        return (self.iprev.result, self.helo, self.helo_align, self.sender, self.generic)


@dataclass(frozen=True, slots=True)
class WhitelistEntry:
    """A sender that skips the checks: an IP network (a single IP is a /32 or /128) or a sender domain."""

    kind: str  # "network" or "domain"
    value: str  # normalised: "198.51.100.0/24", "2001:db8::7/128", "example.org" (A-labels)
    reason: str
    ticket: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    id: int | None = None
    changed_by: str = ""  # who added it or changed it last ("admin:NAME", "token:NAME", "cli:USER")
    changed_at: datetime | None = None

    def describe(self) -> str:
        ticket = f" [{self.ticket}]" if self.ticket else ""
        return f"{self.value}{ticket}: {self.reason}"


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """One decision as the log stores it: enough to answer "why was my mail refused?".

    `checks` is shared by the records of one report and never changed once a record holds it.
    """

    at: datetime
    session: str
    client_ip: str
    ptr: str | None
    helo: str | None
    sender: str | None
    recipients: tuple[str, ...]
    profile: str
    action: str
    stage: str | None
    reply: str | None
    checks: dict[str, dict[str, str]]  # check -> {"result", "reason", "detail"}
    whitelisted: str | None = None
    node: str = ""
    id: int | None = None


@dataclass(frozen=True, slots=True)
class FleetEntry:
    """A watched sending server and its monitor state, as stored (plain values)."""

    ip: str
    helo: str | None
    label: str
    state: str = "unknown"
    since: datetime | None = None
    last_good: dict[str, Any] | None = None  # a Chain as a dict
    candidate: str | None = None
    candidate_count: int = 0
    last_checked: datetime | None = None
    last_chain: dict[str, Any] | None = None
    id: int | None = None
    changed_by: str = ""  # who added it or changed its HELO/label last
    changed_at: datetime | None = None


def iso(moment: datetime | None) -> str | None:
    """A time as ISO 8601 text for JSON, or None."""
    return moment.isoformat() if moment else None
