"""A `Report` with its decisions and advice as one JSON-ready dict (docs/check-json.md).

The CLI's ``check --json`` and the web API print exactly this object; the
schema's version goes up whenever a field changes meaning.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from rdnsgate.model import CheckResult, IprevReport, Lookup, Report, Result
from rdnsgate.policy.advice import advise, recheck_after
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.receivers import predict, prediction_dict

SCHEMA_VERSION = 1


def lookup_dict(lookup: Lookup) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": lookup.qname,
        "type": lookup.qtype,
        "status": lookup.status.value,
        "records": list(lookup.records),
        "ttl": lookup.ttl,
    }
    if lookup.mx:
        out["mx"] = [{"preference": item.preference, "exchange": item.exchange} for item in lookup.mx]
    if lookup.cnames:
        out["cnames"] = list(lookup.cnames)
    if lookup.negative_ttl is not None:
        out["negative_ttl"] = lookup.negative_ttl
        out["soa_zone"] = lookup.soa_zone
    if lookup.detail:
        out["detail"] = lookup.detail
    return out


def check_dict(outcome: CheckResult) -> dict[str, Any]:
    return {
        "result": outcome.result.value,
        "reason": outcome.reason,
        "detail": outcome.detail,
        "lookups": [lookup_dict(item) for item in outcome.lookups],
    }


def chain_dict(iprev: IprevReport) -> dict[str, Any]:
    return {
        "ptr": lookup_dict(iprev.ptr),
        "names": [
            {"name": item.name, "confirms": item.confirms, "forward": lookup_dict(item.lookup)} for item in iprev.names
        ],
        "invalid_names": list(iprev.invalid_names),
        "omitted_names": list(iprev.omitted_names),
        "confirmed_name": iprev.confirmed_name,
    }


def decision_dict(decision: Decision) -> dict[str, Any]:
    reply = decision.reply
    return {
        "action": decision.action.value,
        "stage": decision.stage.value if decision.stage else None,
        "code": reply.code if reply else None,
        "enhanced": reply.enhanced if reply else None,
        "text": reply.text if reply else None,
        "close": decision.close,
        "check": decision.cause.check.value if decision.cause else None,
        "headers": [f"{name}: {value}" for name, value in decision.headers],
    }


def overall(report: Report) -> Result:
    """pass, fail (a check failed) or temperror (none failed, one could not be decided).

    `helo-align` never counts: RFC 5321 forbids refusing mail for it alone; nor does `generic`, a signal
    that no built-in profile refuses for.
    """
    counted = [item for item in report.checks if item.check.value not in ("helo-align", "generic")]
    if any(item.failed for item in counted):
        return Result.FAIL
    if any(item.temporary for item in counted):
        return Result.TEMPERROR
    return Result.PASS


def report_dict(report: Report, decisions: dict[str, Decision], now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    wait = recheck_after(report)
    return {
        "schema": SCHEMA_VERSION,
        "checked_at": now.isoformat(timespec="seconds"),
        "ip": str(report.ip),
        "helo": report.helo_name,
        "sender": report.sender_address,
        "sender_domain": report.sender_domain,
        "verdict": overall(report).value,
        "chain": chain_dict(report.iprev),
        "checks": {item.check.value: check_dict(item) for item in report.checks},
        "profiles": {name: decision_dict(decision) for name, decision in decisions.items()},
        "receivers": [prediction_dict(item) for item in predict(report)],
        "advice": [{"check": item.check.value, "text": item.text} for item in advise(report, now)],
        "recheck": None
        if wait is None
        else {"after_seconds": wait, "at": (now + timedelta(seconds=wait)).isoformat(timespec="seconds")},
    }


def source_dict(report: Report, at_source: IprevReport, now: datetime) -> dict[str, Any]:
    """``authoritative`` of docs/check-json.md: the PTR chain as the zones' own servers give it now."""
    from rdnsgate.monitor.fleet import source_note

    return {
        "chain": chain_dict(at_source),
        "iprev": check_dict(at_source.result),
        "note": source_note(report.iprev, at_source, now),
    }
