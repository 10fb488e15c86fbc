"""The composition root: one runtime per process, its services started, watched, drained and stopped.

`run_services(settings, names)` opens the runtime (the store is migrated
once, here), builds each named service on it and starts them in order.  The
first SIGTERM or SIGINT, or a service that ends on its own, stops them all:
listeners close, sessions in progress get `gateway.drain_seconds` to finish
(the rest are told ``421 4.3.2``), then every service and the runtime let go
of what they hold (queued decisions are written first).  A second SIGTERM or
SIGINT cuts the drain short.  A service that ended on its own makes the exit status
non-zero.  `run_gateway_processes` forks `gateway.workers` processes that
share the gateway's ports (SO_REUSEPORT), each with its own runtime.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rdnsgate.config import Settings, parse_listen
from rdnsgate.errors import RdnsgateError
from rdnsgate.notify import Notifier
from rdnsgate.privileges import Listeners
from rdnsgate.runtime import (
    Commit,
    Deadline,
    Reloadable,
    Runtime,
    Service,
    cancel,
    restart_only,
    settle_gc,
    wait_until,
)

log = logging.getLogger(__name__)

SERVICES = ("gateway", "policy", "web", "monitor")


class ServiceFailed(RdnsgateError):
    """A service ended on its own; the others were stopped."""


class MonitorService:
    """The fleet monitor as a service of the runtime."""

    name = "monitor"

    def __init__(self, runtime: Runtime) -> None:
        from rdnsgate.lookups.authority import AuthorityLookups
        from rdnsgate.monitor.alerts import Alerter
        from rdnsgate.monitor.scheduler import Monitor

        settings = runtime.settings
        ms = settings.monitor
        self.source = (
            AuthorityLookups(runtime.resolver, port=ms.authoritative_port, timeout=settings.dns.timeout)
            if ms.authoritative
            else None
        )
        self.alerter = Alerter(
            ms.webhook_url, timeout=ms.webhook_timeout, tries=ms.webhook_tries, log_alerts=ms.log_alerts
        )
        self.monitor = Monitor(
            ms,
            runtime.engine,
            runtime.store,
            self.alerter,
            node=runtime.node,
            check_seconds=2 * settings.checks.deadline,  # the resolvers' view, then the zones' own servers
            source=self.source,
            public_url=settings.web.public_url,
        )
        self.settings = ms
        self.runtime = runtime
        self.stopping = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self._untrack: Callable[[], None] | None = None

    async def start(self) -> None:
        from rdnsgate.monitor.metrics import METRICS

        self._untrack = METRICS.track(monitors=self.monitor)
        self.task = asyncio.get_running_loop().create_task(self.monitor.run(self.stopping), name="monitor")
        ms = self.settings
        log.info(
            "rdnsgate monitor ready: every %.0f s (±%d%%), %d checks to confirm a change, webhook %s",
            ms.interval,
            round(ms.jitter * 100),
            ms.confirmations,
            ms.webhook_url or "(none)",
        )

    def prepare_reload(self, settings: Settings) -> Commit:
        """The next rounds check on the new interval, confirmations, webhook and engine."""
        from rdnsgate.monitor.alerts import Alerter

        ms, monitor = settings.monitor, self.monitor
        alerter = Alerter(ms.webhook_url, timeout=ms.webhook_timeout, tries=ms.webhook_tries, log_alerts=ms.log_alerts)

        async def commit() -> None:
            if ms != self.settings:
                monitor.alerter = self.alerter = alerter
            monitor.settings = self.settings = ms
            monitor.engine = self.runtime.engine
            monitor.check_seconds = 2 * settings.checks.deadline
            monitor.public_url = settings.web.public_url

        return commit

    async def finished(self) -> None:
        assert self.task is not None
        await asyncio.shield(self.task)

    async def drain(self, deadline: Deadline) -> None:
        self.stopping.set()
        await wait_until(self.task, deadline)

    async def stop(self) -> None:
        await cancel(self.task)
        if self._untrack is not None:
            self._untrack()
        await self.alerter.close()
        if self.source is not None:
            await self.source.close()
        log.info("monitor stopped")


def build(name: str, runtime: Runtime, *, worker: int | None = None) -> Service:
    """The service called `name` (one of SERVICES) on `runtime`."""
    if name == "gateway":
        from rdnsgate.frontends.smtp_proxy import GatewayService

        return GatewayService(runtime, worker=worker)
    if name == "policy":
        from rdnsgate.frontends.policy_server import PolicyRunner

        return PolicyRunner(runtime)
    if name == "web":
        from rdnsgate.frontends.web import WebService

        return WebService(runtime)
    if name == "monitor":
        return MonitorService(runtime)
    raise ValueError(f"unknown service {name!r} (one of {', '.join(SERVICES)})")


class Signals:
    """The first SIGTERM/SIGINT sets `stop`; a later one cuts the drain's deadline short."""

    def __init__(self, stop: asyncio.Event | None = None) -> None:
        self.stop = stop or asyncio.Event()
        self.deadline: Deadline | None = None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, self._received, signum)

    def _received(self, signum: int) -> None:
        if not self.stop.is_set():
            self.stop.set()
        elif self.deadline is not None and not self.deadline.passed():
            log.warning("%s again: ending the sessions still open now", signal.Signals(signum).name)
            self.deadline.cut()

    def draining(self, seconds: float) -> Deadline:
        self.deadline = Deadline(seconds)
        return self.deadline


async def run_services(
    settings: Settings,
    names: Sequence[str],
    stop: asyncio.Event | None = None,
    *,
    worker: int | None = None,
    migrate: bool = True,
    on_ready: Callable[[], None] | None = None,
    reloader: Callable[[], Settings] | None = None,
    listeners: Listeners | None = None,
) -> None:
    """Serve `names` on one runtime until `stop` is set, a SIGTERM/SIGINT arrives or one of them ends.

    Once every service listens (and the store is migrated), systemd is told
    READY=1 (sd_notify; nothing without $NOTIFY_SOCKET) and the watchdog
    starts; a gateway worker calls `on_ready` instead and its parent tells.
    With `reloader` (which reads the settings again), SIGHUP reloads them
    (`reload`).
    """
    if "gateway" in names and len(names) > 1 and settings.gateway.workers != 1:
        log.warning(
            "gateway.workers = %d is for `rdnsgate serve gateway`; `rdnsgate serve` runs one gateway process",
            settings.gateway.workers,
        )
    if reloader is not None:  # a SIGHUP before the handler below is in place must not end the process
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signals = Signals(stop)
    stop = signals.stop
    loop = asyncio.get_running_loop()
    notifier = Notifier()
    notifier.status("opening the store" + (" and migrating it" if migrate else ""))
    runtime = await Runtime.open(settings, migrate=migrate)
    runtime.listeners = listeners  # bound as root before privileges were dropped (privileges.py)
    started: list[Service] = []
    failed: list[str] = []
    all_started = asyncio.Event()
    if reloader is not None:
        # In place before any service says it is ready (its log line), so no reload sent after that line is
        # lost; one that comes while services still start waits until all have started.
        reloading: set[asyncio.Task[bool]] = set()

        async def reload_when_started() -> bool:
            await all_started.wait()
            return await reload(runtime, started, reloader, notifier if on_ready is None else None)

        def hangup() -> None:
            task = loop.create_task(reload_when_started())
            reloading.add(task)
            task.add_done_callback(reloading.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, hangup)
    try:
        services = [build(name, runtime, worker=worker) for name in names]
        runtime.roles = [service.name for service in services]
        for service in services:
            await service.start()
            started.append(service)
        all_started.set()
        runtime.maintain()
        settle_gc()
        if on_ready is not None:
            on_ready()
        else:
            notifier.ready(f"serving: {', '.join(runtime.roles)}")
            notifier.start_watchdog()
        watchers: dict[asyncio.Task[Any], Service] = {
            loop.create_task(service.finished()): service for service in started
        }
        stopper: asyncio.Task[Any] = loop.create_task(stop.wait())
        done, _pending = await asyncio.wait([stopper, *watchers], return_when=asyncio.FIRST_COMPLETED)
        for service in (watchers[task] for task in done if task in watchers):
            failed.append(service.name)
            log.error("the %s stopped on its own; stopping the others", service.name)
        stopper.cancel()
        for task in watchers:
            task.cancel()
    finally:
        if on_ready is None:
            notifier.stopping()
        deadline = signals.draining(settings.gateway.drain_seconds)
        await asyncio.gather(*(service.drain(deadline) for service in started), return_exceptions=True)
        for service in reversed(started):
            try:
                await service.stop()
            except Exception:
                log.exception("stopping the %s failed", service.name)
        await runtime.close()
        await notifier.stop_watchdog()
        log.info("stopped")
    if failed:
        raise ServiceFailed(f"the {', '.join(failed)} stopped on its own")


def _feed_watchdog(notifier: Notifier, every: float) -> None:
    while True:
        notifier.send(WATCHDOG="1")
        time.sleep(every)


async def reload(
    runtime: Runtime, services: Sequence[Service], reloader: Callable[[], Settings], notifier: Notifier | None
) -> bool:
    """Read the settings again and put them in force for what starts from now on; True when they were.

    Everything is built before anything changes: a file with errors, or new
    settings a service cannot use (an unknown profile, a TLS pair that does
    not load), is refused with the reason logged and the settings in force
    kept.  Sessions in progress finish under the settings they started with.
    Settings that need a restart (listen addresses, workers, the store) are
    named in the log and left as they are.
    """
    if notifier is not None:
        notifier.send(RELOADING="1", STATUS="reloading the settings")
    old = runtime.settings
    try:
        new = reloader()
        commits = [runtime.prepare_reload(new)]
        commits += [service.prepare_reload(new) for service in services if isinstance(service, Reloadable)]
    except RdnsgateError as exc:
        log.error("reload refused, the settings in force are kept: %s", exc)
        if notifier is not None:
            notifier.send(READY="1", STATUS="reload refused: the settings in force are kept")
        return False
    for commit in commits:
        await commit()
    waiting = restart_only(old, new)
    log.info(
        "reloaded the settings%s",
        f"; these need a restart and are unchanged until then: {', '.join(waiting)}" if waiting else "",
    )
    if notifier is not None:
        notifier.send(READY="1", STATUS=f"serving: {', '.join(runtime.roles)} (settings reloaded)")
    return True


def worker_count(settings: Settings) -> int:
    return settings.gateway.workers or max(1, os.cpu_count() or 1)


def run_gateway_processes(
    settings: Settings,
    runner: Callable[[Any], Any],
    reloader: Callable[[], Settings] | None = None,
    listeners: Listeners | None = None,
) -> int:
    """`gateway.workers` processes on the same ports (SO_REUSEPORT); returns the exit status.

    The schema is migrated once here, before the workers fork.  SIGTERM and
    SIGINT are passed on to every worker, which drains as a single gateway
    would; when one worker dies, the others are stopped too.
    """
    count = worker_count(settings)
    for item in settings.gateway.listen:
        parse_listen(item)

    async def migrate() -> None:
        from rdnsgate.storage import open_store

        store = await open_store(settings.storage)
        await store.close()

    notifier = Notifier()
    notifier.status("opening the store and migrating it")
    runner(migrate())
    children: list[int] = []
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until the workers are there to be told
    ready_in, ready_out = os.pipe()  # each worker writes one byte once it listens
    for number in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            os.close(ready_in)

            def tell_parent() -> None:
                os.write(ready_out, b"1")

            try:
                runner(
                    run_services(
                        settings,
                        ["gateway"],
                        worker=number + 1,
                        migrate=False,
                        on_ready=tell_parent,
                        reloader=reloader,
                        listeners=listeners,
                    )
                )
            except BaseException:
                log.exception("gateway worker %d failed", number + 1)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)
    os.close(ready_out)

    def forward(signum: int, _frame: object) -> None:
        notifier.stopping()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def hangup(signum: int, _frame: object) -> None:  # every worker reloads its own settings
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, hangup)
    ready = 0
    while ready < count:  # until every worker listens, or one has died before it could (end of file)
        got = os.read(ready_in, count - ready)
        if not got:
            break
        ready += len(got)
    os.close(ready_in)
    if ready == count:
        notifier.ready(f"serving: gateway, {count} workers")
        watchdog = notifier.watchdog_seconds
        if watchdog is not None:  # the parent only waits on its workers: a thread keeps the watchdog fed
            threading.Thread(target=_feed_watchdog, args=(notifier, watchdog / 2), daemon=True).start()
    status = 0
    while children:
        pid, code = os.wait()
        if pid in children:
            children.remove(pid)
            if code != 0 and children:
                log.error("gateway worker %d exited with %d; stopping the others", pid, code)
                forward(signal.SIGTERM, None)
                status = 1
    return status
