"""What every page shares: the store and engine, who the visitor is, login, CSRF, rate limits, rendering.

One `Site` per app (``app.state.site``); routes in public.py and admin.py
declare what they need as FastAPI dependencies: `SiteDep`, `AdminDep` (the
logged-in admin) and `CsrfDep` (a checked CSRF token).  `Refused` and `Redirect` end a request
with an error page (JSON under ``/api/``) or a redirect.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from rdnsgate import __version__
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import WebSettings
from rdnsgate.frontends.web.auth import csrf_ok, csrf_token
from rdnsgate.frontends.web.clientip import client_address, parse_networks
from rdnsgate.frontends.web.ratelimit import RateLimiter
from rdnsgate.model import Report
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.passwords import fingerprint
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.serialize import overall
from rdnsgate.storage import SqlStore

HERE = Path(__file__).resolve().parent


class Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


class Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after


class Site:
    def __init__(self, web: WebSettings, engine: Engine, store: SqlStore) -> None:
        self.store = store
        self.decisions: DecisionLog | None = None  # the process's decision log, for /healthz
        self.configure(web, engine)
        self.running = 0  # anonymous checks in progress (web.max_concurrent_checks)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.globals.update(version=__version__, quote=quote)

    def configure(self, web: WebSettings, engine: Engine) -> None:
        """Take `web` (at start, and on a reload: rate limits start afresh) and the engine checks run on."""
        self.web = web
        self.engine = engine
        self.trusted = parse_networks(web.trusted_proxies)
        self.checks_limiter = RateLimiter(web.check_rate, web.check_burst)
        self.login_limiter = RateLimiter(web.login_rate, max(1, int(web.login_rate)))

    def visitor(self, request: Request) -> str:
        peer = request.client.host if request.client else "0.0.0.0"
        return client_address(peer, request.headers.items(), self.trusted)

    async def admin_of(self, request: Request) -> str | None:
        """The logged-in admin, if the session's password fingerprint still matches the store."""
        user = request.session.get("user")
        if not isinstance(user, str):
            return None
        stored = await self.store.admin_password_hash(user)
        if stored is None or request.session.get("pw") != fingerprint(stored):
            request.session.pop("user", None)
            return None
        return user

    async def require_admin(self, request: Request) -> str:
        user = await self.admin_of(request)
        if user is None:
            if request.method == "GET":
                raise Redirect("/login?" + urlencode({"next": request.url.path}))
            raise Refused(403, "Log in first.")
        return user

    async def require_csrf(self, request: Request, token: str | None) -> None:
        if not csrf_ok(request.session, token):
            raise Refused(403, "The form was stale or did not come from this site (CSRF token missing or wrong).")

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("user", request.session.get("user"))
        values["csrf"] = _LazyToken(request.session)
        return self.templates.TemplateResponse(request, name, values, status_code=status)

    async def run_check(
        self, request: Request, ip: str, helo: str | None, sender: str | None, page_name: str
    ) -> Report:
        """One check for the page or the API, within the visitor's rate and the global cap."""
        try:
            address = parse_ip(ip.strip())
        except ValueError:
            METRICS.count_web(page_name, "bad_request")
            raise Refused(400, f"{ip!r} is not an IP address.") from None
        anonymous = await self.admin_of(request) is None
        if anonymous:
            wait = self.checks_limiter.allow(self.visitor(request), time.monotonic())
            if wait:
                METRICS.count_web(page_name, "rate_limited")
                raise Refused(429, f"Too many checks from your address; try again in {wait:.0f} s.", wait)
            if self.running >= self.web.max_concurrent_checks:
                METRICS.count_web(page_name, "busy")
                raise Refused(503, "Too many checks are running right now; try again in a few seconds.", 5)
        self.running += anonymous
        try:
            report = await self.engine.report(address, helo or None, sender or None)
        finally:
            self.running -= anonymous
        METRICS.count_web(page_name, overall(report).value)
        return report


def site_of(request: Request) -> Site:
    site: Site = request.app.state.site
    return site


async def _admin(request: Request, site: Annotated[Site, Depends(site_of)]) -> str:
    return await site.require_admin(request)


async def _csrf(
    request: Request, site: Annotated[Site, Depends(site_of)], csrf: Annotated[str | None, Form()] = None
) -> None:
    await site.require_csrf(request, csrf)


# What a route declares to get them (FastAPI dependencies): the site, the logged-in admin (a GET without a
# login is sent to /login, anything else gets 403), and a checked CSRF token (the form field "csrf").
SiteDep = Annotated[Site, Depends(site_of)]
AdminDep = Annotated[str, Depends(_admin)]
CsrfDep = Annotated[None, Depends(_csrf)]


class _LazyToken:
    """The session's CSRF token, made only when a page renders a form that needs it,
    so anonymous visitors of the check page get no cookie at all."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session

    def __str__(self) -> str:
        return csrf_token(self.session)


def local_path(target: str) -> str:
    """Only paths on this site: never redirect a login to somewhere else."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/servers"
    return target
