"""Fleet states: from a sending server's successive checks to ok / drift / broken / unknown.

Pure: observations and the previous tracker in, the next tracker and at most
one alert out; no I/O, no clock (times come with the observations).

- `classify` reads one observation: a temporary DNS error is `unknown`, never
  `broken`; a failed iprev or HELO check is `broken`; a chain that differs from
  the last good one (another PTR name, a PTR name that no longer confirms, a HELO
  that no longer matches) is `drift` even when it still passes; else `ok`.
- `step` changes the confirmed state only after `confirmations` consecutive
  observations agree (default 2), so one lost packet never raises an alarm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from rdnsgate.model import Result


class FleetState(StrEnum):
    OK = "ok"
    DRIFT = "drift"
    BROKEN = "broken"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Chain:
    """What must stay the same for a server to be "as it was"."""

    ptr_names: tuple[str, ...]  # sorted
    confirmed_name: str | None
    helo_aligned: bool | None  # None when no HELO name is expected


@dataclass(frozen=True, slots=True)
class Observation:
    at: datetime
    iprev: Result
    helo: Result | None  # None when no HELO name is expected
    chain: Chain
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Tracker:
    state: FleetState
    since: datetime
    last_good: Chain | None = None
    candidate: FleetState | None = None
    candidate_count: int = 0


@dataclass(frozen=True, slots=True)
class Alert:
    before: FleetState
    after: FleetState
    at: datetime
    detail: str


def new_tracker(at: datetime) -> Tracker:
    return Tracker(FleetState.UNKNOWN, at)


def classify(observation: Observation, last_good: Chain | None) -> FleetState:
    results = [observation.iprev] + ([observation.helo] if observation.helo is not None else [])
    if any(result is Result.TEMPERROR for result in results):
        return FleetState.UNKNOWN
    if any(result in (Result.FAIL, Result.PERMERROR) for result in results):
        return FleetState.BROKEN
    if last_good is not None and observation.chain != last_good:
        return FleetState.DRIFT
    return FleetState.OK


def step(tracker: Tracker, observation: Observation, confirmations: int = 2) -> tuple[Tracker, Alert | None]:
    """The tracker after `observation`, and the alert when the confirmed state changed."""
    seen = classify(observation, tracker.last_good)
    if seen is tracker.state:
        if seen is FleetState.OK:
            return replace(tracker, last_good=observation.chain, candidate=None, candidate_count=0), None
        return replace(tracker, candidate=None, candidate_count=0), None
    count = tracker.candidate_count + 1 if seen is tracker.candidate else 1
    if count < max(1, confirmations):
        return replace(tracker, candidate=seen, candidate_count=count), None
    last_good = observation.chain if seen is FleetState.OK else tracker.last_good
    changed = Tracker(seen, observation.at, last_good)
    return changed, Alert(tracker.state, seen, observation.at, observation.detail)


def accept_chain(tracker: Tracker, chain: Chain, at: datetime) -> Tracker:
    """An admin accepts a drifted chain as the new good one: the server is ok again."""
    state = FleetState.OK if tracker.state is FleetState.DRIFT else tracker.state
    return Tracker(state, at if state is not tracker.state else tracker.since, chain)
