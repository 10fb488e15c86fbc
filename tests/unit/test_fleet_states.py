"""Fleet states on plain values, and the properties that keep the monitor from crying wolf."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.model import Result
from rdnsgate.monitor.states import Chain, FleetState, Observation, accept_chain, classify, new_tracker, step

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GOOD = Chain(("mta1.example.org",), "mta1.example.org", True)
RENAMED = Chain(("mta9.example.org",), "mta9.example.org", True)


def seen(
    iprev: Result = Result.PASS, helo: Result | None = Result.PASS, chain: Chain = GOOD, minute: int = 0
) -> Observation:
    return Observation(T0 + timedelta(minutes=minute), iprev, helo, chain)


def run(observations: list[Observation], confirmations: int = 2):  # type: ignore[no-untyped-def]
    tracker, alerts = new_tracker(T0), []
    for observation in observations:
        tracker, alert = step(tracker, observation, confirmations)
        if alert:
            alerts.append(alert)
    return tracker, alerts


def test_classify() -> None:
    assert classify(seen(), None) is FleetState.OK
    assert classify(seen(Result.TEMPERROR), GOOD) is FleetState.UNKNOWN
    assert classify(seen(Result.FAIL), GOOD) is FleetState.BROKEN
    assert classify(seen(helo=Result.FAIL), GOOD) is FleetState.BROKEN
    assert classify(seen(chain=RENAMED), GOOD) is FleetState.DRIFT  # still passes, but changed


def test_drift_then_broken_each_confirmed_once() -> None:
    history = [
        seen(minute=0),
        seen(minute=5),
        seen(chain=RENAMED, minute=10),
        seen(chain=RENAMED, minute=15),
        seen(Result.FAIL, chain=RENAMED, minute=20),
        seen(Result.FAIL, chain=RENAMED, minute=25),
    ]
    tracker, alerts = run(history)
    assert [(a.before, a.after) for a in alerts] == [
        (FleetState.UNKNOWN, FleetState.OK),
        (FleetState.OK, FleetState.DRIFT),
        (FleetState.DRIFT, FleetState.BROKEN),
    ]
    assert tracker.state is FleetState.BROKEN and tracker.since == T0 + timedelta(minutes=25)
    assert tracker.last_good == GOOD


def test_one_lost_packet_is_no_alarm() -> None:
    _, alerts = run([seen(minute=0), seen(minute=5), seen(Result.TEMPERROR, minute=10), seen(minute=15)])
    assert [(a.before, a.after) for a in alerts] == [(FleetState.UNKNOWN, FleetState.OK)]


def test_accepting_a_drifted_chain() -> None:
    tracker, _ = run([seen(), seen(), seen(chain=RENAMED), seen(chain=RENAMED)])
    assert tracker.state is FleetState.DRIFT
    tracker = accept_chain(tracker, RENAMED, T0 + timedelta(hours=1))
    assert tracker.state is FleetState.OK
    tracker, alert = step(tracker, seen(chain=RENAMED))
    assert alert is None and tracker.state is FleetState.OK


results = st.sampled_from(list(Result))
observations = st.builds(seen, results, st.one_of(st.none(), results), st.sampled_from([GOOD, RENAMED]))


@given(st.lists(observations, max_size=30), st.integers(2, 4))
def test_no_single_observation_changes_the_state(history: list[Observation], confirmations: int) -> None:
    tracker = new_tracker(T0)
    for observation in history:
        before = tracker.state
        after, alert = step(tracker, observation, confirmations)
        if alert is not None:  # a change needs `confirmations` observations that agree
            assert tracker.candidate is alert.after and tracker.candidate_count == confirmations - 1
            assert after.state is alert.after and alert.before is before
        else:
            assert after.state is before
        tracker = after


@given(st.lists(observations, max_size=30))
def test_temporary_errors_never_make_broken(history: list[Observation]) -> None:
    tracker = new_tracker(T0)
    for observation in history:
        tracker, alert = step(tracker, observation)
        if alert is not None and alert.after is FleetState.BROKEN:
            assert observation.iprev is not Result.TEMPERROR and observation.helo is not Result.TEMPERROR
