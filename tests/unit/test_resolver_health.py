"""The resolver guard's judgement (rdnsgate.lookups.health): failure shares over a minute, canaries."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from rdnsgate.lookups.health import MIN_QUESTIONS, WINDOW, ResolverHealth


def test_every_nameserver_failing_makes_it_unhealthy_and_it_recovers() -> None:
    health = ResolverHealth()
    for second in range(MIN_QUESTIONS):
        health.observe("127.0.0.1:53", True, 2.0, float(second))
    assert health.problem(MIN_QUESTIONS) == "every nameserver failed at least 100% of the questions of the last minute"
    assert health.update(MIN_QUESTIONS) == (True, health.problem(MIN_QUESTIONS))
    assert health.update(MIN_QUESTIONS + 1)[0] is False  # no second alert while it stays broken
    later = MIN_QUESTIONS + WINDOW + 1  # the bad minute has passed
    assert health.problem(later) is None
    assert health.update(later) == (True, None)


def test_one_good_nameserver_is_enough() -> None:
    health = ResolverHealth()
    for second in range(MIN_QUESTIONS):
        health.observe("a", True, 2.0, float(second))
        health.observe("b", False, 0.01, float(second))
    assert health.problem(MIN_QUESTIONS) is None


def test_too_few_questions_say_nothing() -> None:
    health = ResolverHealth()
    for second in range(MIN_QUESTIONS - 1):
        health.observe("a", True, 2.0, float(second))
    assert health.problem(MIN_QUESTIONS) is None


@given(st.lists(st.booleans(), min_size=MIN_QUESTIONS, max_size=200))
def test_a_share_below_nine_in_ten_is_healthy(outcomes: list[bool]) -> None:
    health = ResolverHealth()
    for index, bad in enumerate(outcomes):
        health.observe("a", bad, 0.1, index * 0.01)
    share = sum(outcomes) / len(outcomes)
    assert (health.problem(len(outcomes) * 0.01) is None) == (share < 0.9)


def test_a_failing_canary_is_named_until_it_answers() -> None:
    health = ResolverHealth(("good1.example.org", "."))
    health.canary("good1.example.org", "does not exist (NXDOMAIN)")
    assert health.problem(0.0) == "the canary good1.example.org does not exist (NXDOMAIN), though it must exist"
    health.canary(".", None)
    assert health.problem(0.0) is not None
    health.canary("good1.example.org", None)
    assert health.problem(0.0) is None
