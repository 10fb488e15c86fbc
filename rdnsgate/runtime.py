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
import dataclasses
import gc
import logging
import socket
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from rdnsgate.config import Settings, StorageSettings
from rdnsgate.lookups import Resolver, build_resolver
from rdnsgate.lookups.canary import MISSING, canaries_of, canary_problem
from rdnsgate.lookups.health import ResolverHealth
from rdnsgate.model import WhitelistEntry
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.exceptions import LinkSigner

if TYPE_CHECKING:
    from rdnsgate.privileges import Listeners
    from rdnsgate.storage import SqlStore

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5.0  # the whitelist reload while a reload is between services (each then asks for its own)
SAID_EVERY = 60.0  # seconds: a store that stays away is said in the log at most this often
HEARTBEAT_SECONDS = 15.0  # how often a node says it is alive (the node list of `rdnsgate db status`)
PRUNE_EVERY = 3600.0  # seconds between prunings of old decisions
PRUNE_BATCH = 1000  # decisions deleted per transaction (storage.decisions_prune's default)


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


Commit = Callable[[], Awaitable[None]]


@runtime_checkable
class Reloadable(Protocol):
    """A service that takes new settings without a restart (SIGHUP).

    `prepare_reload` builds what the new settings need and raises a
    RdnsgateError when they cannot be used, changing nothing; the commit it
    returns puts them in force for what starts after it (sessions in
    progress keep theirs).
    """

    def prepare_reload(self, settings: Settings) -> Commit: ...


RESTART_ONLY = (
    ("gateway", "listen"),
    ("gateway", "workers"),
    ("policy", "listen"),
    ("policy", "exim_listen"),
    ("web", "listen"),
    ("web", "secret_key"),
    ("web", "session_hours"),
    ("web", "secure_cookies"),
    *(("storage", item.name) for item in dataclasses.fields(StorageSettings)),
)
OLD_RESOLVER_KEPT = 600.0  # seconds a replaced resolver stays open for the sessions that still use it


def restart_only(old: Settings, new: Settings) -> list[str]:
    """The changed settings that a reload cannot apply (named in the log; they wait for a restart)."""
    return [
        f"{section}.{key}"
        for section, key in RESTART_ONLY
        if getattr(getattr(old, section), key) != getattr(getattr(new, section), key)
    ]


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


SERVICE_GC_YOUNG = 10_000  # allocations between collections of young objects in a service (Python's default: 700)


def settle_gc() -> None:
    """Once a process's services have started: what exists now lives as long as the process, so move it
    out of the collector's sight (`gc.freeze`), and collect young objects less often.

    Every SMTP connection and policy request makes short-lived objects; with the defaults the collector
    walked the whole start-up heap (the store, the web app, the libraries) again and again: ~9% of a
    loaded gateway's CPU, ~2% after this (BENCHMARKS.md, gateway).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(SERVICE_GC_YOUNG, 20, 100)


class Runtime:
    """The shared parts of one process; `open` builds them, `close` lets them go (in reverse).

    The store is never on the mail path: the whitelist is kept in memory and
    reloaded every `whitelist_refresh` seconds, and at once when PostgreSQL
    says it changed (LISTEN/NOTIFY); decisions wait in the decision log's
    queue.  While the store is away the last whitelist stays in force and
    `store_problem` says why.  `maintain` keeps the node's row in the node
    list fresh and prunes old decisions.
    """

    def __init__(self, settings: Settings, resolver: Resolver, store: SqlStore, decisions: DecisionLog) -> None:
        self.settings = settings
        self.resolver = resolver
        self.engine = Engine(resolver, settings.checks)
        self.store = store
        self.decisions = decisions
        self.hostname = settings.gateway.hostname or socket.getfqdn()
        self.node = settings.storage.node or self.hostname  # this node's name in a shared store
        self.roles: list[str] = []  # the services of this process, for the node list
        self.listeners: Listeners | None = None  # sockets bound as root before the switch to service.user
        self.started_at = datetime.now(UTC)
        self.whitelist: list[WhitelistEntry] = []
        self.whitelist_error: str | None = None
        self.whitelist_loaded: datetime | None = None
        self._whitelist_changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh_every: float | None = None
        self._refresher: asyncio.Task[None] | None = None
        self._error_said = -SAID_EVERY
        self.signer: LinkSigner | None = None  # signs refusal links, so a refused sender may ask for an exception
        self.health = ResolverHealth()
        resolver.client.health = self.health
        self._untrack = METRICS.track(resolvers=resolver, decision_logs=decisions)

    @classmethod
    async def open(cls, settings: Settings, *, migrate: bool = True) -> Runtime:
        """Open the store (bringing its schema up to date unless `migrate` is false) and build the rest."""
        from rdnsgate.storage import open_store

        store = await open_store(settings.storage, migrate=migrate)
        resolver = build_resolver(settings.dns)
        decisions = DecisionLog(store, settings.storage.decision_queue)
        decisions.start()
        runtime = cls(settings, resolver, store, decisions)
        try:  # the key every node signs refusal links with (policy/exceptions.py)
            runtime.signer = LinkSigner((await store.secret("refusal-link")).encode())
        except Exception as exc:
            log.warning("refusal links carry no token (the store did not give its key: %s)", exc)
        return runtime

    def prepare_reload(self, settings: Settings) -> Commit:
        """New DNS settings get a new resolver (and engine) for what starts after the reload; the old one
        stays open a while for sessions in progress."""
        resolver = build_resolver(settings.dns) if settings.dns != self.settings.dns else None

        async def commit() -> None:
            if resolver is not None:
                old = self.resolver
                self._untrack()
                resolver.client.health = self.health
                self.resolver = resolver
                self._untrack = METRICS.track(resolvers=resolver, decision_logs=self.decisions)
                self._spawn(self._close_later(old), "old-resolver")
            if resolver is not None or settings.checks != self.settings.checks:
                self.engine = Engine(self.resolver, settings.checks)
            self.settings = settings
            self._refresh_every = None  # the services ask again for their (new) whitelist_refresh

        return commit

    async def _close_later(self, resolver: Resolver) -> None:
        try:
            await asyncio.sleep(OLD_RESOLVER_KEPT)
        finally:
            await resolver.close()

    def store_problem(self) -> str | None:
        """Why the store is away, as the mail path last saw it; None when it answers."""
        return self.decisions.store_error or self.whitelist_error

    async def load_whitelist(self) -> None:
        self.whitelist = await self.store.whitelist_list(datetime.now(UTC))
        self.whitelist_loaded = datetime.now(UTC)

    def refresh_whitelist(self, interval: float) -> None:
        """Reload the whitelist every `interval` seconds (the shortest asked for by any service wins),
        and at once on a change another node announces (PostgreSQL, unless behind pgbouncer)."""
        if self._refresh_every is not None and self._refresh_every <= interval:
            return
        self._refresh_every = interval
        if self._refresher is None:
            self._refresher = self._spawn(self._refresh(), "whitelist")
            if self.store.postgresql and not self.settings.storage.pgbouncer:
                from rdnsgate.storage.listen import listen
                from rdnsgate.storage.whitelist import CHANGED

                self._spawn(listen(self.settings.storage.url, CHANGED, self._whitelist_changed.set), "listen")

    async def _refresh(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._whitelist_changed.wait(), self._refresh_every or REFRESH_SECONDS)
            self._whitelist_changed.clear()
            try:
                await self.load_whitelist()
            except Exception as exc:
                self.whitelist_error = f"{type(exc).__name__}: {str(exc).strip()[:200]}"
                if asyncio.get_running_loop().time() - self._error_said >= SAID_EVERY:
                    self._error_said = asyncio.get_running_loop().time()
                    log.warning(
                        "could not reload the whitelist (%s); keeping the %d entries loaded at %s",
                        self.whitelist_error,
                        len(self.whitelist),
                        f"{self.whitelist_loaded:%H:%M:%S} UTC" if self.whitelist_loaded else "start",
                    )
            else:
                if self.whitelist_error is not None:
                    log.warning("the whitelist reloads again (%d entries)", len(self.whitelist))
                self.whitelist_error = None

    def guard_resolver(self) -> None:
        """Ask the canaries (``dns.canaries``) every ``dns.canary_interval`` seconds (the mail services call it);
        on every change between healthy and unhealthy, one warning and one webhook POST (``monitor.webhook_url``)."""
        if not any(task.get_name() == "resolver-guard" for task in self._tasks):
            self._spawn(self._guard(), "resolver-guard")

    async def _guard(self) -> None:
        from rdnsgate.monitor.alerts import Alerter

        loop = asyncio.get_running_loop()
        dns = self.settings.dns
        canaries = canaries_of(dns, self.hostname)
        alerter = Alerter(self.settings.monitor.webhook_url, log_alerts=False)
        first = True
        try:
            while True:
                if self.settings.dns.canaries != dns.canaries:  # a reload named other canaries
                    dns = self.settings.dns
                    canaries, first = canaries_of(dns, self.hostname), True
                    for name in [name for name in self.health.failing_canaries if name not in canaries]:
                        self.health.canary(name, None)  # no longer a canary: its failure no longer counts
                    log.info("dns.canaries now: %s", ", ".join(canaries))
                found = {name: await canary_problem(self.resolver, name) for name in canaries}
                if first and any(problem is None for problem in found.values()):
                    missing = [name for name, problem in found.items() if problem == MISSING]
                    if missing:
                        log.warning(
                            "dns.canaries: %s does not exist now, while the other canaries answer: not a canary",
                            ", ".join(missing),
                        )
                        canaries = tuple(name for name in canaries if name not in missing)
                        found = {name: problem for name, problem in found.items() if name not in missing}
                first = False
                self.health.canaries = canaries
                for name, problem in found.items():
                    self.health.canary(name, problem)
                changed, problem = self.health.update(loop.time())
                if changed:
                    self._resolver_changed(problem, alerter)
                await asyncio.sleep(self.settings.dns.canary_interval)
        finally:
            await alerter.close(timeout=1.0)

    def _resolver_changed(self, problem: str | None, alerter: Any) -> None:
        if problem is not None:
            log.warning(
                "the DNS resolver cannot be trusted: %s; every permanent refusal is a 4xx until it recovers", problem
            )
        else:
            log.warning("the DNS resolver answers as it must again; refusals are as the profile says")
        alerter.send(
            {
                "version": 1,
                "event": "resolver",
                "state": "unhealthy" if problem else "healthy",
                "detail": problem or "the canaries answer and the nameservers' failures are below the threshold",
                "node": self.node,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )

    def maintain(self) -> None:
        """Keep this node in the node list, forget nodes gone for a week, prune old decisions."""
        if not any(task.get_name() == "maintain" for task in self._tasks):
            self._spawn(self._maintain(), "maintain")

    async def _maintain(self) -> None:
        from rdnsgate import __version__
        from rdnsgate.storage.nodes import Node

        pruned_at = -PRUNE_EVERY
        loop = asyncio.get_running_loop()
        while True:
            try:
                now = datetime.now(UTC)
                await self.store.node_seen(
                    Node(
                        self.node,
                        ",".join(self.roles),
                        __version__,
                        self.started_at,
                        now,
                        self.decisions.backlog,
                        self.decisions.dropped,
                    )
                )
                if loop.time() - pruned_at >= PRUNE_EVERY:
                    pruned_at = loop.time()
                    await self.store.nodes_forget(now - timedelta(days=7))
                    await self.prune_decisions(now - timedelta(days=self.settings.storage.decision_days))
            except Exception as exc:  # the store is away: the decision log and the refresher say so
                log.debug("node upkeep failed: %s", exc)
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def prune_decisions(self, before: datetime) -> int:
        """Delete decisions older than `before` in small batches, pausing between them; the number deleted."""
        total = 0
        while True:
            removed = await self.store.decisions_prune(before)
            total += removed
            if removed < PRUNE_BATCH:
                break
            await asyncio.sleep(0.05)  # let writers in between batches
        if total:
            log.info("pruned %d decisions older than %s", total, f"{before:%Y-%m-%d %H:%M} UTC")
        return total

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.append(task)
        return task

    async def close(self) -> None:
        for task in self._tasks:
            await cancel(task)
        self._untrack()
        await self.decisions.close()
        await self.resolver.close()
        await self.store.close()
