"""Starting and stopping the services: build them from `Settings`, run until a signal, drain.

The first SIGTERM or SIGINT stops accepting connections and gives open
sessions `DRAIN_SECONDS` to finish; queued decisions are then written and the
store closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from rdnsgate.config import Settings, parse_listen
from rdnsgate.errors import ConfigError
from rdnsgate.frontends.relay import destination_for
from rdnsgate.frontends.smtp_proxy import Gateway, serve
from rdnsgate.lookups import build_resolver
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import apply_overrides, get_profile
from rdnsgate.policy.whitelist import refresh_whitelist
from rdnsgate.storage import open_store

log = logging.getLogger(__name__)

DRAIN_SECONDS = 30.0


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"gateway.tls_cert/tls_key: cannot load {cert} / {key}: {exc}") from None
    return context


def configure_logging(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd logs every command at INFO


async def build_gateway(settings: Settings, *, migrate: bool = True) -> tuple[Gateway, list[Callable[[], object]]]:
    """The gateway and the clean-up steps for its resources (in order)."""
    gw = settings.gateway
    listen = [parse_listen(item) for item in gw.listen]
    del listen  # parsed here so a bad address fails before anything starts
    profile, switched_off = apply_overrides(get_profile(gw.profile), gw.overrides, "gateway.overrides")
    hostname = gw.hostname or socket.getfqdn()
    context = tls_context(gw.tls_cert, gw.tls_key)
    destination = destination_for(gw.next_hop, gw.maildir, timeout=gw.next_hop_timeout, helo_name=hostname)
    store = await open_store(settings.storage.url, migrate=migrate)
    resolver = build_resolver(settings.dns)
    decisions = DecisionLog(store, settings.storage.decision_queue)
    decisions.start()
    gateway = Gateway(
        gw,
        Engine(resolver, settings.checks),
        profile,
        destination,
        decisions,
        hostname=hostname,
        switched_off=switched_off,
        tls_context=context,
    )
    gateway.whitelist = await store.whitelist_list(datetime.now(UTC))
    gateway.store = store
    untrack = METRICS.track(gateways=gateway, resolvers=resolver, decision_logs=decisions)
    return gateway, [untrack, decisions.close, destination.close, resolver.close, store.close]


def stop_on_signals(stop: asyncio.Event | None = None) -> asyncio.Event:
    """`stop`, or a new event, set by the first SIGTERM or SIGINT."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    return stop


async def run_gateway(
    settings: Settings, stop: asyncio.Event | None = None, *, worker: int | None = None, migrate: bool = True
) -> None:
    """Serve until `stop` is set or a SIGTERM/SIGINT arrives (one worker of several when `worker` is set)."""
    gateway, cleanups = await build_gateway(settings, migrate=migrate and worker is None)
    stop = stop_on_signals(stop)
    loop = asyncio.get_running_loop()
    refresher = loop.create_task(refresh_whitelist(gateway, gateway.store, settings.gateway.whitelist_refresh))
    servers = []
    try:
        listen = [parse_listen(item) for item in settings.gateway.listen]
        servers = await serve(gateway, listen, reuse_port=worker is not None)
        log.info(
            "rdnsgate gateway%s ready: profile %s, next hop %s, relay domains %s",
            "" if worker is None else f" worker {worker}",
            gateway.profile.name,
            gateway.destination.describe(),
            ", ".join(sorted(gateway.relay_domains)) or "(none: every recipient is refused)",
        )
        await stop.wait()
        log.info("stopping: no new connections; %d sessions may finish", gateway.sessions)
    finally:
        for server in servers:
            server.close()
        deadline = loop.time() + DRAIN_SECONDS
        while gateway.sessions and loop.time() < deadline:
            await asyncio.sleep(0.1)
        refresher.cancel()
        for cleanup in cleanups:
            result = cleanup()
            if asyncio.iscoroutine(result):
                await result
        log.info("stopped")


def worker_count(settings: Settings) -> int:
    return settings.gateway.workers or max(1, os.cpu_count() or 1)


def run_gateway_processes(settings: Settings, runner: Callable[[Any], Any]) -> int:
    """`gateway.workers` processes on the same ports (SO_REUSEPORT); returns the exit status.

    The schema is migrated once here, before the workers fork.  SIGTERM and
    SIGINT are passed on to every worker, which drains as a single gateway
    would; when one worker dies, the others are stopped too.
    """
    count = worker_count(settings)
    for item in settings.gateway.listen:
        parse_listen(item)

    async def migrate() -> None:
        store = await open_store(settings.storage.url)
        await store.close()

    runner(migrate())
    children: list[int] = []
    for number in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            status = 0
            try:
                runner(run_gateway(settings, worker=number + 1))
            except BaseException:
                log.exception("gateway worker %d failed", number + 1)
                status = 1
            finally:
                os._exit(status)
        children.append(pid)

    def forward(signum: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
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


async def run_policy(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """The Postfix policy service until `stop` is set or a SIGTERM/SIGINT arrives."""
    from rdnsgate.frontends.policy_server import PolicyService, serve_policy

    ps = settings.policy
    profile, switched_off = apply_overrides(get_profile(ps.profile), ps.overrides, "policy.overrides")
    for item in ps.listen:
        if not item.startswith("unix:"):
            parse_listen(item)
    store = await open_store(settings.storage.url)
    resolver = build_resolver(settings.dns)
    decisions = DecisionLog(store, settings.storage.decision_queue)
    decisions.start()
    service = PolicyService(
        Engine(resolver, settings.checks),
        profile,
        decisions,
        authserv_id=ps.authserv_id or socket.getfqdn(),
        switched_off=switched_off,
        check_url=ps.check_url or None,
        footer=ps.reject_footer or None,
        max_instances=ps.max_instances,
    )
    service.whitelist = await store.whitelist_list(datetime.now(UTC))
    untrack = METRICS.track(policy_services=service, resolvers=resolver, decision_logs=decisions)
    stop = stop_on_signals(stop)
    loop = asyncio.get_running_loop()
    refresher = loop.create_task(refresh_whitelist(service, store, ps.whitelist_refresh))
    servers = []
    try:
        servers = await serve_policy(service, list(ps.listen))
        log.info("rdnsgate policy service ready: profile %s", profile.name)
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        refresher.cancel()
        untrack()
        await decisions.close()
        await resolver.close()
        await store.close()
        log.info("stopped")


async def run_monitor(settings: Settings, stop: asyncio.Event | None = None, *, migrate: bool = True) -> None:
    """The fleet monitor until `stop` is set or a SIGTERM/SIGINT arrives."""
    from rdnsgate.lookups.authority import AuthorityLookups
    from rdnsgate.monitor.alerts import Alerter
    from rdnsgate.monitor.scheduler import Monitor

    ms = settings.monitor
    store = await open_store(settings.storage.url, migrate=migrate)
    resolver = build_resolver(settings.dns)
    source = (
        AuthorityLookups(resolver, port=ms.authoritative_port, timeout=settings.dns.timeout)
        if ms.authoritative
        else None
    )
    alerter = Alerter(ms.webhook_url, timeout=ms.webhook_timeout, tries=ms.webhook_tries, log_alerts=ms.log_alerts)
    monitor = Monitor(
        ms, Engine(resolver, settings.checks), store, alerter, source=source, public_url=settings.web.public_url
    )
    untrack = METRICS.track(monitors=monitor, resolvers=resolver)
    stop = stop_on_signals(stop)
    log.info(
        "rdnsgate monitor ready: every %.0f s (±%d%%), %d checks to confirm a change, webhook %s",
        ms.interval,
        round(ms.jitter * 100),
        ms.confirmations,
        ms.webhook_url or "(none)",
    )
    try:
        await monitor.run(stop)
    finally:
        untrack()
        await alerter.close()
        if source is not None:
            await source.close()
        await resolver.close()
        await store.close()
        log.info("monitor stopped")


async def run_web(settings: Settings, stop: asyncio.Event | None = None, *, migrate: bool = True) -> None:
    """The web app until `stop` is set or a SIGTERM/SIGINT arrives."""
    import uvicorn

    from rdnsgate.frontends.web import EmbeddedServer, create_app

    host, port = parse_listen(settings.web.listen, "web.listen")
    store = await open_store(settings.storage.url, migrate=migrate)
    resolver = build_resolver(settings.dns)
    secret = settings.web.secret_key or await store.secret("session-key")
    app = create_app(settings, Engine(resolver, settings.checks), store, secret)
    untrack = METRICS.track(resolvers=resolver)
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=False, lifespan="off", server_header=False
    )
    server = EmbeddedServer(config)
    stop = stop_on_signals(stop)

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        log.info("rdnsgate web app starting on http://%s", settings.web.listen)
        try:
            await server.serve()
        except SystemExit:  # uvicorn's answer to a port it cannot bind
            server.started = False
        if not server.started and not stop.is_set():
            raise ConfigError(f"web.listen {settings.web.listen}: cannot listen there (in use, or not this host's)")
    finally:
        watcher.cancel()
        untrack()
        await resolver.close()
        await store.close()
        log.info("web app stopped")


async def run_all(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Gateway, web app and monitor in one process (`rdnsgate serve`); one stops, all stop."""
    stop = stop_on_signals(stop)
    if settings.gateway.workers != 1:
        log.warning(
            "gateway.workers = %d is for `rdnsgate serve gateway`; `rdnsgate serve` runs one gateway process",
            settings.gateway.workers,
        )
    store = await open_store(settings.storage.url)  # the schema is brought up to date once, here
    await store.close()
    tasks = [
        asyncio.create_task(run_gateway(settings, stop, migrate=False), name="gateway"),
        asyncio.create_task(run_web(settings, stop, migrate=False), name="web"),
        asyncio.create_task(run_monitor(settings, stop, migrate=False), name="monitor"),
    ]
    try:
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            for task in done:
                log.error("the %s stopped on its own; stopping the others", task.get_name())
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        stop.set()
