"""Is the resolver itself broken?  A guard so that a broken resolver never refuses mail.

If the resolver starts answering NXDOMAIN or SERVFAIL for everything (a
broken local unbound, an expired DNSSEC trust anchor, an outage), a checking
gateway would refuse every sender for good.  `ResolverHealth` watches two
things: every question's outcome per nameserver over a sliding minute
(timeouts and SERVFAIL/REFUSED count as bad; NXDOMAIN is an answer), and
canary names that must exist (``dns.canaries``), asked directly every
``dns.canary_interval`` seconds.  `problem` says why the resolver cannot be
trusted now, or None; the faces then make every permanent refusal temporary
(policy/decide.py `temporary_instead`).  Pure: the caller passes the time.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

WINDOW = 60.0  # seconds of outcomes kept per nameserver
MIN_QUESTIONS = 50  # fewer than this in the window: too few to judge by shares
BAD_SHARE = 0.9  # this share of bad outcomes, at every nameserver: the resolver is broken


@dataclass
class ServerWindow:
    """One nameserver's outcomes in the last WINDOW seconds: (time, bad, seconds taken)."""

    outcomes: deque[tuple[float, bool, float]] = field(default_factory=deque)
    bad: int = 0
    latency: float = 0.0

    def add(self, now: float, bad: bool, seconds: float) -> None:
        self.outcomes.append((now, bad, seconds))
        self.bad += bad
        self.latency += seconds
        self.expire(now)

    def expire(self, now: float) -> None:
        outcomes = self.outcomes
        while outcomes and outcomes[0][0] < now - WINDOW:
            _at, bad, seconds = outcomes.popleft()
            self.bad -= bad
            self.latency -= seconds

    @property
    def share_bad(self) -> float:
        return self.bad / len(self.outcomes) if self.outcomes else 0.0

    @property
    def mean_latency(self) -> float:
        return max(0.0, self.latency / len(self.outcomes)) if self.outcomes else 0.0


class ResolverHealth:
    def __init__(self, canaries: tuple[str, ...] = ()) -> None:
        self.canaries = canaries
        self.servers: dict[str, ServerWindow] = {}
        self.failing_canaries: dict[str, str] = {}  # canary -> what went wrong at its last probe
        self.unhealthy_since: float | None = None

    def observe(self, server: str, bad: bool, seconds: float, now: float) -> None:
        """One question's outcome at `server` (bad: a timeout, SERVFAIL or REFUSED)."""
        window = self.servers.get(server)
        if window is None:
            window = self.servers[server] = ServerWindow()
        window.add(now, bad, seconds)

    def canary(self, name: str, problem: str | None) -> None:
        """The outcome of one canary probe: None when the name answered as it must."""
        if problem is None:
            self.failing_canaries.pop(name, None)
        else:
            self.failing_canaries[name] = problem

    def problem(self, now: float) -> str | None:
        """Why the resolver's answers cannot be trusted now, or None."""
        if self.failing_canaries:
            name, what = next(iter(self.failing_canaries.items()))
            return f"the canary {name or '.'} {what}, though it must exist"
        for window in self.servers.values():
            window.expire(now)
        judged = [item for item in self.servers.values() if len(item.outcomes) >= MIN_QUESTIONS]
        if judged and len(judged) == len(self.servers) and all(item.share_bad >= BAD_SHARE for item in judged):
            worst = min(item.share_bad for item in judged)
            return f"every nameserver failed at least {worst:.0%} of the questions of the last minute"
        return None

    def update(self, now: float) -> tuple[bool, str | None]:
        """(changed, problem): whether healthy/unhealthy flipped since the last call (for one alert per change)."""
        problem = self.problem(now)
        was = self.unhealthy_since is not None
        if problem is not None and not was:
            self.unhealthy_since = now
        elif problem is None and was:
            self.unhealthy_since = None
        return (problem is not None) != was, problem
