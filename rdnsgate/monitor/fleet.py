"""Checking fleet entries: a report becomes an observation, the tracker moves on, the result is stored.

`observe` and `source_note` are pure; `check_entry` runs one check through
the engine (and, when given, the zone's own servers) and the state logic of
monitor/states.py, and stores it.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from rdnsgate.checks.names import parse_ip
from rdnsgate.lookups.authority import AuthorityLookups
from rdnsgate.model import FleetEntry, IprevReport, Report, Result, Status
from rdnsgate.monitor.states import Alert, Chain, FleetState, Observation, Tracker, accept_chain, classify, step
from rdnsgate.policy.evaluate import Engine


class FleetStates(Protocol):
    async def fleet_get(self, ip: str) -> FleetEntry | None: ...

    async def fleet_save_state(self, entry: FleetEntry) -> None: ...


class FleetSink(Protocol):
    async def fleet_record(
        self,
        entry: FleetEntry,
        at: datetime,
        seen: str,
        detail: str,
        alert: tuple[str, str] | None,
        *,
        next_check: datetime | None = None,
        node: str | None = None,
    ) -> bool: ...


CONFIRM_SPEEDUP = 4  # a change waiting for confirmation is checked again after interval / 4


def observe(report: Report, expect_helo: bool, at: datetime) -> Observation:
    """The parts of a report the monitor compares from one check to the next."""
    iprev = report.iprev
    chain = Chain(
        ptr_names=tuple(sorted(item.name for item in iprev.names)),
        confirmed_name=iprev.confirmed_name,
        helo_aligned=(report.helo_align.result is Result.PASS) if expect_helo else None,
    )
    details = [f"iprev {iprev.result.result.value}: {iprev.result.detail}"]
    if expect_helo:
        details.append(f"HELO {report.helo.result.value}: {report.helo.detail}")
    return Observation(at, iprev.result.result, report.helo.result if expect_helo else None, chain, "; ".join(details))


def tracker_of(entry: FleetEntry) -> Tracker:
    last_good = Chain(**_chain_args(entry.last_good)) if entry.last_good else None
    candidate = FleetState(entry.candidate) if entry.candidate else None
    return Tracker(
        FleetState(entry.state), entry.since or datetime.now(UTC), last_good, candidate, entry.candidate_count
    )


def _chain_args(data: dict[str, Any]) -> dict[str, Any]:
    known = ("ptr_names", "confirmed_name", "helo_aligned")  # last_chain also carries "forward"
    return {key: data.get(key) for key in known} | {"ptr_names": tuple(data.get("ptr_names") or ())}


def accept_current(entry: FleetEntry, at: datetime) -> FleetEntry:
    """`entry` with its last seen chain accepted as the good one: a drifted server is ok again.

    Raises ValueError unless the server is in drift (a broken chain is never "good").
    """
    if entry.state != FleetState.DRIFT.value or not entry.last_chain:
        raise ValueError(f"{entry.ip} is {entry.state}: only the chain of a drifted server can be accepted")
    chain = Chain(**_chain_args(entry.last_chain))
    tracker = accept_chain(tracker_of(entry), chain, at)
    return replace(
        entry,
        state=tracker.state.value,
        since=tracker.since,
        last_good=asdict(chain),
        candidate=None,
        candidate_count=0,
    )


async def accept_server(store: FleetStates, ip: str, at: datetime) -> FleetEntry:
    """Accept the current chain of the watched server `ip` and store it (`accept_current`).

    Raises LookupError when `ip` is not watched, ValueError when it is not in drift.
    """
    entry = await store.fleet_get(ip)
    if entry is None:
        raise LookupError(f"{ip} is not watched")
    accepted = accept_current(entry, at)
    await store.fleet_save_state(accepted)
    return accepted


def with_tracker(
    entry: FleetEntry, tracker: Tracker, observation: Observation, forward: dict[str, list[str]] | None = None
) -> FleetEntry:
    """`entry` with the tracker's state; its last chain also shows each PTR name's addresses (`forward`)."""
    return replace(
        entry,
        state=tracker.state.value,
        since=tracker.since,
        last_good=asdict(tracker.last_good) if tracker.last_good else None,
        candidate=tracker.candidate.value if tracker.candidate else None,
        candidate_count=tracker.candidate_count,
        last_checked=observation.at,
        last_chain={**asdict(observation.chain), "forward": forward or {}},
    )


def _held_for(seen: IprevReport) -> int:
    """How long resolvers may keep what `seen` was built from (the longest TTL behind it)."""
    lookups = [seen.ptr] + [item.lookup for item in seen.names]
    ttls = [
        lookup.negative_ttl if lookup.negative_ttl is not None else lookup.ttl
        for lookup in lookups
        if lookup.status in (Status.ANSWER, Status.NXDOMAIN, Status.NODATA)
    ]
    return max((ttl for ttl in ttls if ttl is not None), default=0)


def source_note(seen: IprevReport, at_source: IprevReport, at: datetime) -> str:
    """What the zone's own servers say beside what the resolvers said (`seen`)."""
    outcome = at_source.result.result
    if seen.result.result is Result.PASS:
        if outcome is Result.PASS:
            return f"the same at the source ({at_source.confirmed_name} confirms there)"
        if outcome in (Result.FAIL, Result.PERMERROR):
            until = at + timedelta(seconds=_held_for(seen))
            return (
                f"broken at the source ({at_source.result.detail}); resolvers may keep the old, good answer "
                f"until {until:%H:%M} UTC"
            )
        return f"the zone's own servers could not be asked: {at_source.result.detail}"
    if outcome is Result.PASS:
        until = at + timedelta(seconds=_held_for(seen))
        return (
            f"fixed at the source ({at_source.confirmed_name} confirms there); "
            f"resolvers may keep the old answer until {until:%H:%M} UTC"
        )
    if outcome in (Result.FAIL, Result.PERMERROR):
        return f"broken at the source too: {at_source.result.detail}"
    return f"the zone's own servers could not be asked: {at_source.result.detail}"


async def check_entry(
    engine: Engine,
    store: FleetSink,
    entry: FleetEntry,
    confirmations: int = 2,
    source: AuthorityLookups | None = None,
    *,
    interval: float | None = None,
    node: str | None = None,
) -> tuple[FleetEntry, Report, Alert | None]:
    """Check `entry` now, store the result; the updated entry, the report and the alert (if any).

    With `source`, a failing iprev chain is asked again of the zones' own
    servers, and what they say is added to the check's detail.  The next
    check is due `interval` seconds later (a quarter of it while a change
    waits for confirmation); None: at once.  With `node`, the result is
    stored only while that node holds the server's lease; when it does not,
    the alert is None (the node that holds it now decides).
    """
    at = datetime.now(UTC)
    report = await engine.report(parse_ip(entry.ip), entry.helo)
    observation = observe(report, entry.helo is not None, at)
    if source is not None and report.iprev.result.result in (Result.FAIL, Result.PERMERROR):
        at_source = await engine.iprev_at_source(source, report.ip)
        note = source_note(report.iprev, at_source, at)
        observation = replace(observation, detail=f"{observation.detail}; {note}")
    before = tracker_of(entry)
    seen = classify(observation, before.last_good).value
    tracker, alert = step(before, observation, confirmations)
    forward = {item.name: list(item.lookup.records) for item in report.iprev.names}
    updated = with_tracker(entry, tracker, observation, forward)
    next_check = None
    if interval is not None:
        next_check = at + timedelta(seconds=interval / (CONFIRM_SPEEDUP if updated.candidate else 1))
    stored = await store.fleet_record(
        updated,
        at,
        seen,
        observation.detail,
        (alert.before.value, alert.after.value) if alert else None,
        next_check=next_check,
        node=node,
    )
    return updated, report, alert if stored else None
