"""What every service in one process shares, built once: the runtime, and the service life cycle.

A `Runtime` holds the settings, one resolver with its cache, one check
engine, one store (migrated once), one decision log and the whitelist kept in
memory (refreshed in the background, so the store is never on the mail path).
Every service of the process (gateway, policy service, web app, monitor) is
built on it and follows `Service`: `start` (bound and serving when it
returns), `finished` (returns only when the service ends on its own),
`drain` (stop accepting, let work in progress finish until a deadline) and
`stop` (let go of what it holds).  The supervisor drives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from rdnsgate.config import Settings
from rdnsgate.lookups import Resolver, build_resolver
from rdnsgate.model import WhitelistEntry
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine

if TYPE_CHECKING:
    from rdnsgate.storage import SqlStore

log = logging.getLogger(__name__)


class Deadline:
    """When draining must end: `seconds` from now, or at once after `cut` (a second SIGTERM)."""

    def __init__(self, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.at = self.loop.time() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - self.loop.time())

    def passed(self) -> bool:
        return self.remaining() <= 0

    def cut(self) -> None:
        self.at = self.loop.time()


class Service(Protocol):
    name: str

    async def start(self) -> None: ...

    async def finished(self) -> None: ...

    async def drain(self, deadline: Deadline) -> None: ...

    async def stop(self) -> None: ...


async def wait_until(task: asyncio.Task[None] | None, deadline: Deadline) -> None:
    """Wait for `task` to end, but not beyond `deadline` (the task itself is left alone)."""
    while task is not None and not task.done() and not deadline.passed():
        await asyncio.wait({task}, timeout=min(0.1, deadline.remaining()))


async def cancel(task: asyncio.Task[None] | None) -> None:
    """Cancel `task` if it still runs, and wait until it has ended."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO


class Runtime:
    """The shared parts of one process; `open` builds them, `close` lets them go (in reverse)."""

    def __init__(self, settings: Settings, resolver: Resolver, store: SqlStore, decisions: DecisionLog) -> None:
        self.settings = settings
        self.resolver = resolver
        self.engine = Engine(resolver, settings.checks)
        self.store = store
        self.decisions = decisions
        self.hostname = settings.gateway.hostname or socket.getfqdn()
        self.whitelist: list[WhitelistEntry] = []
        self._refresher: asyncio.Task[None] | None = None
        self._refresh_every: float | None = None
        self._untrack = METRICS.track(resolvers=resolver, decision_logs=decisions)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Open the store (bringing its schema up to date unless `migrate` is false) and build the rest."""
        from rdnsgate.storage import open_store

        store = await open_store(settings.storage, migrate=migrate)
        resolver = build_resolver(settings.dns)
        decisions = DecisionLog(store, settings.storage.decision_queue)
        decisions.start()
        return cls(settings, resolver, store, decisions)

    async def load_whitelist(self) -> None:
        self.whitelist = await self.store.whitelist_list(datetime.now(UTC))

    def refresh_whitelist(self, interval: float) -> None:
        """Reload the whitelist every `interval` seconds (the shortest asked for by any service wins)."""
        if self._refresh_every is not None and self._refresh_every <= interval:
            return
        self._refresh_every = interval
        if self._refresher is not None:
            self._refresher.cancel()
        self._refresher = asyncio.get_running_loop().create_task(self._refresh(interval), name="whitelist")

    async def _refresh(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.load_whitelist()
            except Exception:
                log.exception("could not reload the whitelist; keeping %d entries", len(self.whitelist))

    async def close(self) -> None:
        await cancel(self._refresher)
        self._untrack()
        await self.decisions.close()
        await self.resolver.close()
        await self.store.close()
