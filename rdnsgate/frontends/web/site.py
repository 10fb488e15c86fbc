"""What every page shares: the store and engine, who the visitor is, login, CSRF, rate limits, rendering.

One `Site` per app (``app.state.site``); routes in public.py and admin.py
declare what they need as FastAPI dependencies: `SiteDep`, the logged-in user
whose role allows the page (`FleetReader`, `WhitelistWriter`, ...) and `CsrfDep`
(a checked CSRF token); the API's callers come from `api_allowed`.  `Refused` and `Redirect` end a request
with an error page (JSON under ``/api/``) or a redirect.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, NamedTuple
from urllib.parse import quote, urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.templating import Jinja2Templates

from rdnsgate import __version__
from rdnsgate.access import Permission, may, token_actor, token_hash, web_actor
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import ExceptionSettings, WebSettings
from rdnsgate.frontends.web.auth import csrf_ok, csrf_token
from rdnsgate.frontends.web.clientip import client_address, parse_networks
from rdnsgate.frontends.web.ratelimit import RateLimiter
from rdnsgate.lookups.authority import AuthorityLookups
from rdnsgate.model import IPAddress, IprevReport, Report
from rdnsgate.monitor.alerts import Alerter
from rdnsgate.monitor.metrics import METRICS
from rdnsgate.passwords import fingerprint
from rdnsgate.policy.decision_log import DecisionLog
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.exceptions import LinkClaim, LinkSigner
from rdnsgate.policy.serialize import overall
from rdnsgate.storage import SqlStore

HERE = Path(__file__).resolve().parent


class Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


class Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None, *, bearer: bool = False) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after
        self.bearer = bearer  # a 401 of the API: say how to authenticate (WWW-Authenticate: Bearer)


class Login(NamedTuple):
    """Who makes a request: a web user or an API token, its role, and its name in the change log."""

    name: str
    role: str
    actor: str


class Site:
    def __init__(self, web: WebSettings, engine: Engine, store: SqlStore) -> None:
        self.store = store
        self.decisions: DecisionLog | None = None  # the process's decision log, for /healthz
        self.signer: LinkSigner | None = None  # checks the tokens of refusal links (policy/exceptions.py)
        self.exceptions = ExceptionSettings()
        self.alerter: Alerter | None = None  # the webhook of new exception requests
        self.authoritative_port = 53  # where the zones' own servers answer (monitor.authoritative_port)
        self.exception_limiter = RateLimiter(self.exceptions.request_rate / 3600, 3)
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

    def configure_exceptions(self, settings: ExceptionSettings, signer: LinkSigner | None, webhook: str) -> None:
        """Self-service exceptions: their settings, the link signer, where new requests are announced."""
        self.exceptions, self.signer = settings, signer
        self.exception_limiter = RateLimiter(settings.request_rate / 3600, 3)
        self.alerter = Alerter(webhook, log_alerts=False) if webhook else None

    async def at_source(self, ip: IPAddress) -> IprevReport:
        """The PTR chain of `ip` as the zones' own servers give it now (on ``monitor.authoritative_port``)."""
        source = AuthorityLookups(self.engine.resolver, port=self.authoritative_port)
        try:
            return await self.engine.iprev_at_source(source, ip)
        finally:
            await source.close()

    def link_claim(self, ip: str, token: str) -> LinkClaim | None:
        """What a refusal link's token says, when it is valid for `ip` now."""
        if self.signer is None or not token:
            return None
        return self.signer.verify(token, ip.strip(), time.time(), self.exceptions.link_hours)

    def visitor(self, request: Request) -> str:
        peer = request.client.host if request.client else "0.0.0.0"
        return client_address(peer, request.headers.items(), self.trusted)

    async def login_of(self, request: Request) -> Login | None:
        """The logged-in web user, if the session's password fingerprint still matches the store."""
        user = request.session.get("user")
        if not isinstance(user, str):
            return None
        found = await self.store.admin_login(user)
        if found is None or request.session.get("pw") != fingerprint(found[0]):
            request.session.pop("user", None)
            return None
        return Login(user, found[1], web_actor(user))

    async def require(self, request: Request, permission: Permission) -> Login:
        """The logged-in user whose role grants `permission`: a GET without a login goes to /login."""
        login = await self.login_of(request)
        if login is None:
            if request.method == "GET":
                raise Redirect("/login?" + urlencode({"next": request.url.path}))
            raise Refused(403, "Log in first.")
        if not may(login.role, permission):
            raise Refused(403, f"Your role ({login.role}) may not do this ({permission}).")
        return login

    async def api_caller(self, request: Request, permission: Permission) -> Login:
        """Who calls the API: a bearer token (no CSRF needed), or a logged-in session (a change then needs the
        session's CSRF token in the X-CSRF-Token header); 401 without either, 403 when the role does not allow it."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if header:
            found = None
            if scheme.lower() == "bearer" and token.strip():
                found = await self.store.token_find(token_hash(token.strip()))
            if found is None:
                raise Refused(401, "The bearer token is missing, unknown or revoked.", bearer=True)
            login = Login(found[0], found[1], token_actor(found[0]))
        else:
            session_login = await self.login_of(request)
            if session_login is None:
                raise Refused(401, "Send Authorization: Bearer TOKEN (rdnsgate admin token create).", bearer=True)
            if request.method not in ("GET", "HEAD") and not csrf_ok(
                request.session, request.headers.get("x-csrf-token")
            ):
                raise Refused(403, "A change with a session cookie needs the X-CSRF-Token header.")
            login = session_login
        if not may(login.role, permission):
            raise Refused(403, f"The role {login.role} may not do this ({permission}).")
        return login

    async def require_csrf(self, request: Request, token: str | None) -> None:
        if not csrf_ok(request.session, token):
            raise Refused(403, "The form was stale or did not come from this site (CSRF token missing or wrong).")

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("user", request.session.get("user"))
        values.setdefault("role", request.session.get("role"))
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
        anonymous = await self.login_of(request) is None
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


def allowed(permission: Permission) -> Any:
    """A dependency: the logged-in web user whose role grants `permission` (see `Site.require`)."""

    async def dependency(request: Request, site: Annotated[Site, Depends(site_of)]) -> Login:
        return await site.require(request, permission)

    return Depends(dependency)


# Declares the bearer scheme in the OpenAPI document; `Site.api_caller` reads the header itself.
BEARER = HTTPBearer(auto_error=False, description="an API token: rdnsgate admin token create --name NAME --role ROLE")


def api_allowed(permission: Permission) -> Any:
    """A dependency: the API caller (token or session) whose role grants `permission` (see `Site.api_caller`)."""

    async def dependency(
        request: Request,
        site: Annotated[Site, Depends(site_of)],
        _bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Login:
        return await site.api_caller(request, permission)

    return Depends(dependency)


async def _csrf(
    request: Request, site: Annotated[Site, Depends(site_of)], csrf: Annotated[str | None, Form()] = None
) -> None:
    await site.require_csrf(request, csrf)


# What a route declares to get them (FastAPI dependencies): the site, the logged-in user allowed to do the
# page's work (a GET without a login is sent to /login, anything else gets 403), and a checked CSRF token
# (the form field "csrf").
SiteDep = Annotated[Site, Depends(site_of)]
CsrfDep = Annotated[None, Depends(_csrf)]
FleetReader = Annotated[Login, allowed(Permission.FLEET_READ)]
FleetWriter = Annotated[Login, allowed(Permission.FLEET_WRITE)]
WhitelistReader = Annotated[Login, allowed(Permission.WHITELIST_READ)]
WhitelistWriter = Annotated[Login, allowed(Permission.WHITELIST_WRITE)]
DecisionsReader = Annotated[Login, allowed(Permission.DECISIONS_READ)]


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
