"""Forward-confirmed reverse DNS (RFC 8601 "iprev") of the client IP.

Input: the client IP, the PTR lookup of its reverse name, and the forward
lookup (A for an IPv4 client, AAAA for IPv6) of each examined PTR name.
Output: an `IprevReport`.  No I/O: `lookups.gather` fetches what
`names_to_examine` asks for and hands the values in.

Rules (docs/checks.md):
1. PTR NXDOMAIN or NODATA -> permerror/no-ptr; temporary -> temperror/ptr-lookup.
2. PTR names are normalised; invalid host names are set aside; at most
   `max_names` valid names are examined, the rest noted.
3. Any examined name whose addresses hold the client IP -> pass.
4. Otherwise: a temporary forward error -> temperror/forward-lookup; no valid
   name -> fail/invalid-ptr; every name NXDOMAIN -> fail/ptr-name-unknown;
   else fail/ptr-mismatch.
Every name counts, not only the first; matching stays within the client's
address family.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from rdnsgate.checks.names import is_postfix_hostname, normalize
from rdnsgate.model import (
    Check,
    CheckResult,
    ForwardName,
    IPAddress,
    IprevReport,
    Lookup,
    Result,
    Status,
)

DEFAULT_MAX_PTR_NAMES = 10

REASONS = {
    "confirmed": "pass: a PTR name resolves back to the client IP",
    "no-ptr": "permerror: the reverse name does not exist or has no PTR record",
    "ptr-lookup": "temperror: the PTR lookup timed out or failed",
    "forward-lookup": "temperror: no name confirmed and a forward lookup failed temporarily",
    "invalid-ptr": "fail: the PTR data holds no valid host name",
    "ptr-name-unknown": "fail: every examined PTR name does not exist",
    "ptr-mismatch": "fail: no examined PTR name has the client IP among its addresses",
}


def forward_type(ip: IPAddress) -> str:
    """The record type that must lead back to `ip`: A or AAAA."""
    return "A" if ip.version == 4 else "AAAA"


@dataclass(frozen=True, slots=True)
class PtrNames:
    examined: tuple[str, ...]
    invalid: tuple[str, ...]
    omitted: tuple[str, ...]


def names_to_examine(ptr: Lookup, max_names: int = DEFAULT_MAX_PTR_NAMES) -> PtrNames:
    """Split the PTR data into names to look up, invalid names, and the overflow."""
    if ptr.status is Status.ANSWER and len(ptr.records) == 1:  # the common case, cheaply
        name = normalize(ptr.records[0])
        return PtrNames((name,), (), ()) if is_postfix_hostname(name) else PtrNames((), (name,), ())
    valid: list[str] = []
    invalid: list[str] = []
    seen: set[str] = set()
    if ptr.status is Status.ANSWER:
        for raw in ptr.records:
            name = normalize(raw)
            if name in seen:
                continue
            seen.add(name)
            (valid if is_postfix_hostname(name) else invalid).append(name)
    return PtrNames(tuple(valid[:max_names]), tuple(invalid), tuple(valid[max_names:]))


def holds_address(lookup: Lookup, ip: IPAddress, ip_text: str | None = None) -> bool:
    """True when `lookup` answered with `ip` (whose text is `ip_text`) among its addresses."""
    if lookup.status is not Status.ANSWER:
        return False
    if (ip_text or str(ip)) in lookup.records:  # records are canonical text: the common case
        return True
    for text in lookup.records:
        try:
            if ipaddress.ip_address(text) == ip:
                return True
        except ValueError:
            continue
    return False


def confirmed_detail(name: str, rtype: str, ip_text: str) -> str:
    """The detail of a pass: `name` has the client's address `ip_text` among its `rtype` records."""
    return f"{name} has {rtype} {ip_text}"


def _result(result: Result, reason: str, detail: str, lookups: tuple[Lookup, ...]) -> CheckResult:
    return CheckResult(Check.IPREV, result, reason, detail, lookups)


def evaluate_iprev(
    ip: IPAddress,
    ptr: Lookup,
    forward: Mapping[str, Lookup],
    max_names: int = DEFAULT_MAX_PTR_NAMES,
    names: PtrNames | None = None,
) -> IprevReport:
    """Apply the iprev rules to fetched values.  `forward` maps examined names to lookups.

    `names` is `names_to_examine(ptr, max_names)` when the caller has it already.
    """
    rtype = forward_type(ip)
    if ptr.temporary:
        res = _result(
            Result.TEMPERROR,
            "ptr-lookup",
            f"the PTR lookup of {ptr.qname} failed temporarily ({ptr.status}: {ptr.detail})",
            (ptr,),
        )
        return IprevReport(ip, res, ptr)
    if names is None:
        names = names_to_examine(ptr, max_names)
    if ptr.status is not Status.ANSWER or not (names.examined or names.invalid):
        word = "does not exist" if ptr.status is Status.NXDOMAIN else "has no PTR record"
        res = _result(Result.PERMERROR, "no-ptr", f"{ip} has no reverse DNS: {ptr.qname} {word}", (ptr,))
        return IprevReport(ip, res, ptr)

    ip_text = str(ip)
    checked: list[ForwardName] = []
    for name in names.examined:
        lookup = forward.get(name) or Lookup(name, rtype, Status.ERROR, detail="not looked up")
        checked.append(ForwardName(name, lookup, holds_address(lookup, ip, ip_text)))
    lookups = (ptr, *(item.lookup for item in checked))

    def report(res: CheckResult, confirmed_name: str | None = None) -> IprevReport:
        return IprevReport(ip, res, ptr, tuple(checked), names.invalid, names.omitted, confirmed_name)

    confirmed = next((item for item in checked if item.confirms), None)
    if confirmed is not None:
        res = _result(Result.PASS, "confirmed", confirmed_detail(confirmed.name, rtype, ip_text), lookups)
        return report(res, confirmed.name)

    temporary = [item for item in checked if item.lookup.temporary]
    if temporary:
        first = temporary[0].lookup
        detail = f"the {rtype} lookup of {first.qname} failed temporarily ({first.status}: {first.detail})"
        res = _result(Result.TEMPERROR, "forward-lookup", detail, lookups)
    elif not checked:
        shown = ", ".join(repr(n) for n in names.invalid)
        res = _result(Result.FAIL, "invalid-ptr", f"the PTR data of {ip} holds no valid host name: {shown}", lookups)
    elif all(item.lookup.status is Status.NXDOMAIN for item in checked):
        shown = ", ".join(item.name for item in checked)
        res = _result(Result.FAIL, "ptr-name-unknown", f"the PTR name {shown} does not exist", lookups)
    else:
        parts = []
        for item in checked:
            if item.lookup.status is Status.ANSWER:
                parts.append(f"{item.name} has {rtype} {', '.join(item.lookup.records)}")
            elif item.lookup.status is Status.NODATA:
                parts.append(f"{item.name} has no {rtype} record")
            else:
                parts.append(f"{item.name} does not exist")
        res = _result(Result.FAIL, "ptr-mismatch", f"no PTR name leads back to {ip}: " + "; ".join(parts), lookups)
    return report(res)
