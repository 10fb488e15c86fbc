"""The web app: the public check page and API, the admin pages, /metrics and /healthz.

`create_app` builds a FastAPI app around an `Engine` and a store that the
caller owns (`WebService` takes both from the runtime); the routes live in
public.py and admin.py, what they share in site.py.  Pages are rendered on
the server with Jinja2 (autoescaping on: PTR names and HELO strings from DNS
are text, never markup); no script runs, and the only CSS is vendored.  Only
``/api/v1`` is in the OpenAPI document (``/api/v1/openapi.json``): the check (public.py)
and the management API for helpdesks and provisioning (api.py, bearer tokens).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from rdnsgate import __version__
from rdnsgate.config import Settings, parse_listen
from rdnsgate.errors import ConfigError
from rdnsgate.frontends.web import admin, api, exceptions, public
from rdnsgate.frontends.web.site import HERE, Redirect, Refused, Site
from rdnsgate.policy.evaluate import Engine
from rdnsgate.runtime import Commit, Deadline, Runtime, cancel, wait_until
from rdnsgate.storage import SqlStore

log = logging.getLogger(__name__)

SESSION_COOKIE = "rdnsgate_session"
# The pages run no script at all; the policy says so, as a second line behind escaping.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def create_app(settings: Settings, engine: Engine, store: SqlStore, secret_key: str) -> FastAPI:
    web = settings.web
    app = FastAPI(
        title="rdnsgate API",
        version=__version__,
        description="Forward-confirmed reverse DNS, HELO and sender-domain checks of one mail client.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    site = app.state.site = Site(web, engine, store)
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=int(web.session_hours * 3600),
        same_site="lax",
        https_only=web.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.include_router(public.router)
    app.include_router(api.router)
    app.include_router(admin.router)
    app.include_router(exceptions.router)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    @app.exception_handler(Redirect)
    async def redirect(_request: Request, exc: Redirect) -> Response:
        return RedirectResponse(exc.to, status_code=303)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else {}
        if exc.bearer:
            headers["WWW-Authenticate"] = 'Bearer realm="rdnsgate"'
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.message}, exc.status, headers=headers)
        response = site.page(request, "error.html", exc.status, message=exc.message)
        if headers:
            response.headers.update(headers)
        return response

    return app


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the supervisor's drain ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class WebService:
    """The web app as a service of the runtime: one uvicorn server in the process's event loop."""

    name = "web"

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.host, self.port = parse_listen(runtime.settings.web.listen, "web.listen")
        self.server: EmbeddedServer | None = None
        self.site: Site | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        settings, store = self.runtime.settings, self.runtime.store
        secret = settings.web.secret_key or await store.secret("session-key")
        app = create_app(settings, self.runtime.engine, store, secret)
        app.state.site.decisions = self.runtime.decisions
        app.state.site.authoritative_port = settings.monitor.authoritative_port
        app.state.site.configure_exceptions(
            settings.exceptions, self.runtime.signer, settings.exceptions.webhook_url or settings.monitor.webhook_url
        )
        self.site = app.state.site
        config = uvicorn.Config(
            app, host=self.host, port=self.port, log_config=None, access_log=False, lifespan="off", server_header=False
        )
        server = self.server = EmbeddedServer(config)
        log.info("rdnsgate web app starting on http://%s", settings.web.listen)
        listeners = self.runtime.listeners
        bound = listeners.take(settings.web.listen) if listeners else None
        self.task = asyncio.get_running_loop().create_task(self._serve(server, bound), name="web")
        while not server.started and not self.task.done():
            await asyncio.sleep(0.02)
        if not server.started:
            raise ConfigError(f"web.listen {settings.web.listen}: cannot listen there (in use, or not this host's)")

    @staticmethod
    async def _serve(server: EmbeddedServer, sockets: list[socket.socket] | None = None) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's answer to a port it cannot bind
            await server.serve(sockets=sockets)

    def prepare_reload(self, settings: Settings) -> Commit:
        """The web settings that do not need a restart (limits, proxies, public URL); listen, the session
        key and cookie settings wait for one (the supervisor names them)."""
        site = self.site

        async def commit() -> None:
            if site is not None:
                site.configure(settings.web, self.runtime.engine)
                site.configure_exceptions(
                    settings.exceptions,
                    self.runtime.signer,
                    settings.exceptions.webhook_url or settings.monitor.webhook_url,
                )

        return commit

    async def finished(self) -> None:
        assert self.task is not None
        await asyncio.shield(self.task)

    async def drain(self, deadline: Deadline) -> None:
        if self.server is None or self.task is None:
            return
        self.server.should_exit = True
        await wait_until(self.task, deadline)

    async def stop(self) -> None:
        await cancel(self.task)
        log.info("web app stopped")
