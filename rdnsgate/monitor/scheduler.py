"""The fleet monitor's loop: check each server on its (jittered) interval, store, alert.

`Monitor.run_once` checks the servers that are due, at most `concurrency` at
a time; `Monitor.run` repeats that until stopped, looking for servers added
or removed (by the CLI or the web app) every few seconds.  Each check goes
through monitor/fleet.py, so a state changes only after `confirmations`
checks in a row agree, and a temporary DNS error never makes a server broken.
A change waiting for confirmation is checked again after a quarter interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rdnsgate.config import MonitorSettings
from rdnsgate.lookups.authority import AuthorityLookups
from rdnsgate.model import FleetEntry
from rdnsgate.monitor.alerts import Alerter, alert_body
from rdnsgate.monitor.fleet import FleetSink, check_entry
from rdnsgate.policy.evaluate import Engine

log = logging.getLogger("rdnsgate.monitor")

POLL_SECONDS = 2.0  # how often the list of servers is read again
PRUNE_SECONDS = 3600.0
CONFIRM_SPEEDUP = 4  # a change waiting for confirmation is checked again after interval / 4


class FleetSource(FleetSink, Protocol):
    async def fleet_list(self) -> list[FleetEntry]: ...

    async def fleet_prune(self, before: datetime) -> int: ...


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        engine: Engine,
        store: FleetSource,
        alerter: Alerter,
        *,
        source: AuthorityLookups | None = None,
        public_url: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.alerter = alerter
        self.source = source
        self.public_url = public_url
        self.rng = rng or random.Random()
        self.due: dict[str, float] = {}  # ip -> loop time of its next check
        self.checks = 0
        self.errors = 0
        self.alerts = 0
        self._pruned = 0.0

    def interval(self) -> float:
        """One interval, varied by up to ±jitter so the checks of many servers spread out."""
        jitter = self.settings.jitter
        return self.settings.interval * (1 + self.rng.uniform(-jitter, jitter))

    def _first_due(self, entry: FleetEntry, now: float) -> float:
        if entry.last_checked is None:
            return now
        age = (datetime.now(UTC) - entry.last_checked).total_seconds()
        return now + max(0.0, self.interval() - age)

    async def run_once(self) -> int:
        """Check every server that is due; the number checked."""
        loop = asyncio.get_running_loop()
        entries = await self.store.fleet_list()
        now = loop.time()
        present = {entry.ip for entry in entries}
        for ip in list(self.due):
            if ip not in present:
                del self.due[ip]
        for entry in entries:
            if entry.ip not in self.due:
                self.due[entry.ip] = self._first_due(entry, now)
        due = [entry for entry in entries if self.due[entry.ip] <= now]
        if due:
            gate = asyncio.Semaphore(self.settings.concurrency)

            async def one(entry: FleetEntry) -> None:
                async with gate:
                    pending = await self.check(entry)
                    # A change waiting for confirmation is looked at again sooner.
                    self.due[entry.ip] = loop.time() + self.interval() / (CONFIRM_SPEEDUP if pending else 1)

            await asyncio.gather(*(one(entry) for entry in due))
        if now - self._pruned > PRUNE_SECONDS:
            self._pruned = now
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.history_days)
            removed = await self.store.fleet_prune(cutoff)
            if removed:
                log.info("forgot %d fleet checks older than %d days", removed, self.settings.history_days)
        return len(due)

    async def check(self, entry: FleetEntry) -> bool:
        """Check one server; True when a state change waits for confirmation."""
        try:
            updated, _report, alert = await check_entry(
                self.engine, self.store, entry, self.settings.confirmations, self.source
            )
        except Exception:
            self.errors += 1
            log.exception("checking %s failed", entry.ip)
            return False
        self.checks += 1
        if alert is not None:
            self.alerts += 1
            self.alerter.send(alert_body(updated, alert, self.public_url))
        return updated.candidate is not None

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception:  # the store may be away for a moment; try again
                self.errors += 1
                log.exception("monitor round failed")
            upcoming = min(self.due.values(), default=loop.time() + POLL_SECONDS)
            wait = max(0.05, min(POLL_SECONDS, upcoming - loop.time()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
