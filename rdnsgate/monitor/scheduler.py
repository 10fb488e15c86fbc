"""The fleet monitor's loop: claim the servers that are due, check them, store, alert.

`Monitor.run_once` claims the servers that are due and that no other node
holds (a lease in the store: monitor/fleet.py, storage/fleet.py), checks
them at most `concurrency` at a time, and stores each check with the time
of its next one (the interval, varied by the jitter; a quarter of it while
a change waits for confirmation).  `Monitor.run` repeats that until
stopped, then gives its leases back.  So several monitor nodes on one store
check each server once per interval between them, a node that dies is
replaced as soon as its leases run out (one interval at most), and an alert
goes out from the node whose check was stored, once.  Each check goes
through monitor/fleet.py, so a state changes only after `confirmations`
checks in a row agree, and a temporary DNS error never makes a server broken.
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

POLL_SECONDS = 2.0  # the longest wait before the store is asked again for servers that are due
PRUNE_SECONDS = 3600.0


class FleetSource(FleetSink, Protocol):
    async def fleet_claim(self, node: str, now: datetime, lease: float, limit: int) -> list[FleetEntry]: ...

    async def fleet_release(self, node: str) -> int: ...

    async def fleet_prune(self, before: datetime) -> int: ...


class Monitor:
    def __init__(
        self,
        settings: MonitorSettings,
        engine: Engine,
        store: FleetSource,
        alerter: Alerter,
        *,
        node: str = "",
        check_seconds: float = 30.0,
        source: AuthorityLookups | None = None,
        public_url: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.store = store
        self.alerter = alerter
        self.node = node
        self.check_seconds = check_seconds  # the longest one check may take (its evaluations' deadlines)
        self.source = source
        self.public_url = public_url
        self.rng = rng or random.Random()
        self.checks = 0
        self.errors = 0
        self.alerts = 0
        self._pruned = -PRUNE_SECONDS

    def interval(self) -> float:
        """One interval, varied by up to ±jitter so the checks of many servers spread out."""
        jitter = self.settings.jitter
        return self.settings.interval * (1 + self.rng.uniform(-jitter, jitter))

    def lease(self) -> float:
        """How long a claimed server is this node's: one interval, but never shorter than a slow check."""
        return max(self.settings.interval, self.check_seconds)

    async def run_once(self) -> int:
        """Claim and check every server that is due; the number checked."""
        loop = asyncio.get_running_loop()
        limit = self.settings.concurrency * 4
        claimed = await self.store.fleet_claim(self.node, datetime.now(UTC), self.lease(), limit)
        if claimed:
            gate = asyncio.Semaphore(self.settings.concurrency)

            async def one(entry: FleetEntry) -> None:
                async with gate:
                    await self.check(entry)

            await asyncio.gather(*(one(entry) for entry in claimed))
        now = loop.time()
        if now - self._pruned > PRUNE_SECONDS:
            self._pruned = now
            cutoff = datetime.now(UTC) - timedelta(days=self.settings.history_days)
            removed = await self.store.fleet_prune(cutoff)
            if removed:
                log.info("forgot %d fleet checks older than %d days", removed, self.settings.history_days)
        return len(claimed)

    async def check(self, entry: FleetEntry) -> bool:
        """Check one server; True when a state change waits for confirmation."""
        try:
            updated, _report, alert = await check_entry(
                self.engine,
                self.store,
                entry,
                self.settings.confirmations,
                self.source,
                interval=self.interval(),
                node=self.node,
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
        wait = max(0.05, min(POLL_SECONDS, self.settings.interval / 4))
        try:
            while not stop.is_set():
                try:
                    checked = await self.run_once()
                except Exception:  # the store may be away for a moment; try again
                    self.errors += 1
                    log.exception("monitor round failed")
                    checked = 0
                if checked < self.settings.concurrency * 4:  # a full claim: more may be due at once
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), wait)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.store.fleet_release(self.node), 5)
