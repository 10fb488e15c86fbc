"""Fix steps for a sender: who must change which record, and when to re-check.

Pure: a `Report` and the current time in, a list of `Advice` out.  The
negative TTL of a failed lookup (RFC 2308: the lesser of the zone SOA's TTL
and MINIMUM) says how long resolvers may keep answering "no such record"
after the record is fixed; `recheck_after` gives the longest of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from rdnsgate.model import Check, CheckResult, Lookup, Report, Result, Status


@dataclass(frozen=True, slots=True)
class Advice:
    check: Check
    text: str


def _negative_note(lookups: Iterable[Lookup], now: datetime) -> str:
    """One sentence: how long resolvers may keep these negative answers (RFC 2308)."""
    negative = [
        item for item in lookups if item.status in (Status.NXDOMAIN, Status.NODATA) and item.negative_ttl is not None
    ]
    if not negative:
        return ""
    longest = max(item.negative_ttl or 0 for item in negative)
    until = (now + timedelta(seconds=longest)).strftime("%H:%M UTC")
    names = ", ".join(f"{item.qname} {item.qtype}" for item in negative)
    zones = sorted({item.soa_zone for item in negative if item.soa_zone})
    zone = f" (SOA of {', '.join(zones)})" if zones else ""
    return f" Resolvers may keep the old negative answer ({names}) up to {longest} s{zone}: re-check after {until}."


def negative_lookups(report: Report) -> list[Lookup]:
    """Failed (NXDOMAIN/NODATA) lookups of checks that did not pass."""
    found: list[Lookup] = []
    for outcome in report.checks:
        if outcome.result is Result.PASS:
            continue
        found.extend(item for item in outcome.lookups if item.status in (Status.NXDOMAIN, Status.NODATA))
    return found


def recheck_after(report: Report) -> int | None:
    """Seconds until every negative answer behind a failure has expired from caches."""
    ttls = [item.negative_ttl for item in negative_lookups(report) if item.negative_ttl is not None]
    return max(ttls) if ttls else None


def _iprev(report: Report, now: datetime) -> list[str]:
    iprev = report.iprev
    outcome = iprev.result
    ip = report.ip
    rtype = "A" if ip.version == 4 else "AAAA"
    example = report.helo_name if report.helo.result is Result.PASS and report.helo_name else "mail.example.org"
    if outcome.reason == "no-ptr":
        return [
            f"Set a PTR record for {ip} ({iprev.ptr.qname}) pointing at your mail server's name, e.g. {example}. "
            f"Only whoever holds the IP address can: your hosting provider or ISP (often in its control panel "
            f"as 'reverse DNS'); you cannot add it in your own domain's zone.{_negative_note([iprev.ptr], now)}"
        ]
    if outcome.reason == "invalid-ptr":
        shown = ", ".join(repr(name) for name in iprev.invalid_names)
        return [
            f"The PTR record of {ip} holds {shown}, which is not a valid host name. Ask the holder of the IP "
            f"(your hosting provider) to change it to a real name such as {example}, and give that name an "
            f"{rtype} record {ip}."
        ]
    steps = []
    if outcome.reason in ("ptr-mismatch", "ptr-name-unknown"):
        for item in iprev.names:
            lookup = item.lookup
            if lookup.status is Status.NXDOMAIN:
                steps.append(
                    f"The PTR name {item.name} does not exist. Create it in its DNS zone with an {rtype} record "
                    f"{ip}, or have the PTR changed to a name that has one.{_negative_note([lookup], now)}"
                )
            elif lookup.status is Status.NODATA:
                family = " An IPv6 client needs an AAAA record; an A record does not count." if ip.version == 6 else ""
                steps.append(
                    f"Add an {rtype} record {item.name} -> {ip} in the zone of {item.name} (at your DNS host)."
                    f"{family}{_negative_note([lookup], now)}"
                )
            elif lookup.status is Status.ANSWER:
                steps.append(
                    f"{item.name} has {rtype} {', '.join(lookup.records)}, not {ip}. Add {ip} to {item.name}'s "
                    f"{rtype} records, or have the PTR of {ip} changed to a name that resolves to it."
                )
    return steps


def _helo(report: Report, now: datetime) -> list[str]:
    outcome = report.helo
    ptr = report.iprev.confirmed_name
    name = ptr or "its fully-qualified name (the one in its PTR record)"
    configure = (
        f"configure your mail server to announce {name} in HELO/EHLO "
        "(Postfix: smtp_helo_name; Exim: helo_data; Exchange: the send connector's FQDN)."
    )
    if outcome.reason in ("invalid", "not-fqdn", "bare-ip", "helo-missing"):
        return [configure[0].upper() + configure[1:]]
    if outcome.reason in ("unknown", "no-address", "mx-only"):
        notes = _negative_note((item for item in outcome.lookups if item.qtype in ("A", "AAAA")), now)
        return [f"Give {report.helo_name} an A or AAAA record for {report.ip} in its DNS zone, or {configure}{notes}"]
    return []


def _align(report: Report) -> list[str]:
    if report.helo_align.result is not Result.FAIL:
        return []
    ptr = report.iprev.confirmed_name
    target = f"the PTR name {ptr}" if ptr else "a name whose A/AAAA record is the client address"
    return [
        f"Not a reason to refuse mail (RFC 5321 §4.1.4), but some receivers score it: make the HELO name "
        f"{target}, so that HELO, PTR and A/AAAA all agree."
    ]


def _generic(report: Report) -> list[str]:
    if report.generic.result is not Result.FAIL:
        return []
    name = report.iprev.shown_name or "the PTR name"
    return [
        f"{name} looks like an ISP's default name for a dynamic or home address, which many receivers score "
        f"or refuse: ask the IP's owner (your ISP or hosting provider) for a PTR record such as "
        f"mail.yourdomain, give that name an A/AAAA record for {report.ip}, and announce it in HELO."
    ]


def _sender(report: Report, now: datetime) -> list[str]:
    outcome = report.sender
    domain = report.sender_domain
    notes = _negative_note(outcome.lookups, now)
    if outcome.reason == "unknown-domain":
        return [
            f"The sender domain {domain} does not exist: fix the envelope sender's spelling, "
            f"or register the domain.{notes}"
        ]
    if outcome.reason == "no-mail-records":
        return [
            f"Publish an MX record for {domain} (or at least an A record) so replies and bounces can reach it.{notes}"
        ]
    if outcome.reason == "null-mx":
        return [
            f"{domain} publishes a null MX (RFC 7505): it declares that it handles no mail. Send from a domain "
            f"that accepts replies and bounces, or replace the null MX with the domain's real mail servers."
        ]
    if outcome.reason in ("invalid-address", "not-fqdn"):
        return ["Use a full envelope sender address, local-part@domain.example, in MAIL FROM."]
    return []


def _temporary(outcome: CheckResult) -> str:
    return (
        f"{outcome.check.value}: {outcome.detail}. This is temporary: receivers answer 4xx and the sender retries. "
        "If it persists, check that the zone's authoritative name servers answer (dig +trace)."
    )


def advise(report: Report, now: datetime) -> list[Advice]:
    """Fix steps for everything in `report` that did not pass, most important first."""
    steps: list[Advice] = []
    for outcome in report.checks:
        if outcome.temporary:
            steps.append(Advice(outcome.check, _temporary(outcome)))
    if report.iprev.result.failed:
        steps += [Advice(Check.IPREV, text) for text in _iprev(report, now)]
    if report.helo.failed:
        steps += [Advice(Check.HELO, text) for text in _helo(report, now)]
    steps += [Advice(Check.HELO_ALIGN, text) for text in _align(report)]
    if report.sender.failed:
        steps += [Advice(Check.SENDER, text) for text in _sender(report, now)]
    steps += [Advice(Check.GENERIC, text) for text in _generic(report)]
    return steps
