"""Checking fleet entries: a report becomes an observation, the tracker moves on, the result is stored.

`observe` is pure; `check_entry` runs one check through the engine and the
state logic of monitor/states.py and stores it.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from rdnsgate.checks.names import parse_ip
from rdnsgate.model import FleetEntry, Report, Result
from rdnsgate.monitor.states import Alert, Chain, FleetState, Observation, Tracker, classify, step
from rdnsgate.policy.evaluate import Engine


class FleetSink(Protocol):
    async def fleet_record(
        self, entry: FleetEntry, at: datetime, seen: str, detail: str, alert: tuple[str, str] | None
    ) -> None: ...


def observe(report: Report, expect_helo: bool, at: datetime) -> Observation:
    """The parts of a report the monitor compares from one check to the next."""
    iprev = report.iprev
    chain = Chain(
        ptr_names=tuple(sorted(item.name for item in iprev.names)),
        confirmed_name=iprev.confirmed_name,
        helo_aligned=(report.helo_align.result is Result.PASS) if expect_helo else None,
    )
    details = [report.iprev.result.detail] + ([report.helo.detail] if expect_helo else [])
    return Observation(at, iprev.result.result, report.helo.result if expect_helo else None, chain, "; ".join(details))


def tracker_of(entry: FleetEntry) -> Tracker:
    last_good = Chain(**_chain_args(entry.last_good)) if entry.last_good else None
    candidate = FleetState(entry.candidate) if entry.candidate else None
    return Tracker(
        FleetState(entry.state), entry.since or datetime.now(UTC), last_good, candidate, entry.candidate_count
    )


def _chain_args(data: dict[str, Any]) -> dict[str, Any]:
    return {**data, "ptr_names": tuple(data.get("ptr_names", ()))}


def with_tracker(entry: FleetEntry, tracker: Tracker, observation: Observation) -> FleetEntry:
    return replace(
        entry,
        state=tracker.state.value,
        since=tracker.since,
        last_good=asdict(tracker.last_good) if tracker.last_good else None,
        candidate=tracker.candidate.value if tracker.candidate else None,
        candidate_count=tracker.candidate_count,
        last_checked=observation.at,
        last_chain=asdict(observation.chain),
    )


async def check_entry(
    engine: Engine, store: FleetSink, entry: FleetEntry, confirmations: int = 2
) -> tuple[FleetEntry, Report, Alert | None]:
    """Check `entry` now, store the result; the updated entry, the report and the alert (if any)."""
    at = datetime.now(UTC)
    report = await engine.report(parse_ip(entry.ip), entry.helo)
    observation = observe(report, entry.helo is not None, at)
    before = tracker_of(entry)
    seen = classify(observation, before.last_good).value
    tracker, alert = step(before, observation, confirmations)
    updated = with_tracker(entry, tracker, observation)
    await store.fleet_record(
        updated, at, seen, observation.detail, (alert.before.value, alert.after.value) if alert else None
    )
    return updated, report, alert
