"""The web app: the public check page and API, the admin pages, /metrics and /healthz.

`create_app` builds a FastAPI app around an `Engine` and a store that the
caller owns (daemon.run_web opens and closes them).  Pages are rendered on
the server with Jinja2 (autoescaping on: PTR names and HELO strings from DNS
are text, never markup); the only script-free CSS is vendored.  Only
``/api/v1`` is in the OpenAPI document (``/api/v1/openapi.json``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import uvicorn
from fastapi import FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from starlette.middleware.sessions import SessionMiddleware

from rdnsgate import __version__
from rdnsgate.checks.names import parse_ip
from rdnsgate.config import Settings, parse_moment
from rdnsgate.errors import UsageError
from rdnsgate.frontends.web.auth import csrf_ok, csrf_token, fingerprint, verify_password
from rdnsgate.frontends.web.clientip import client_address, parse_networks
from rdnsgate.frontends.web.pictures import chain_changes, chain_picture, timeline
from rdnsgate.frontends.web.ratelimit import RateLimiter
from rdnsgate.frontends.web.schema import ReportModel
from rdnsgate.model import FleetEntry, Report, WhitelistEntry
from rdnsgate.monitor.fleet import accept_current
from rdnsgate.monitor.metrics import METRICS, REGISTRY
from rdnsgate.policy.advice import advise, recheck_after
from rdnsgate.policy.decide import decide
from rdnsgate.policy.decision_log import explain
from rdnsgate.policy.evaluate import Engine
from rdnsgate.policy.profiles import BUILTIN
from rdnsgate.policy.serialize import overall, report_dict
from rdnsgate.policy.whitelist import parse_expiry, parse_target
from rdnsgate.storage import SqlStore

log = logging.getLogger("rdnsgate.web")
HERE = Path(__file__).resolve().parent
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
TIMELINE_SPANS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


class ApiError(BaseModel):
    detail: str


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


class _Refused(Exception):
    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        self.status = status
        self.message = message
        self.retry_after = retry_after


def create_app(settings: Settings, engine: Engine, store: SqlStore, secret_key: str) -> FastAPI:
    web = settings.web
    trusted = parse_networks(web.trusted_proxies)
    checks_limiter = RateLimiter(web.check_rate, web.check_burst)
    login_limiter = RateLimiter(web.login_rate, max(1, int(web.login_rate)))
    running = [0]  # anonymous checks in progress (web.max_concurrent_checks)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(version=__version__, quote=quote)

    app = FastAPI(
        title="rdnsgate API",
        version=__version__,
        description="Forward-confirmed reverse DNS, HELO and sender-domain checks of one mail client.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
    )
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret_key,
        session_cookie=SESSION_COOKIE,
        max_age=int(web.session_hours * 3600),
        same_site="lax",
        https_only=web.secure_cookies,
    )
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    # -- helpers -----------------------------------------------------------------------
    def visitor(request: Request) -> str:
        peer = request.client.host if request.client else "0.0.0.0"
        return client_address(peer, request.headers.items(), trusted)

    async def admin_of(request: Request) -> str | None:
        user = request.session.get("user")
        if not isinstance(user, str):
            return None
        stored = await store.admin_password_hash(user)
        if stored is None or request.session.get("pw") != fingerprint(stored):
            request.session.pop("user", None)
            return None
        return user

    async def require_admin(request: Request) -> str:
        user = await admin_of(request)
        if user is None:
            if request.method == "GET":
                raise _Redirect("/login?" + urlencode({"next": request.url.path}))
            raise _Refused(403, "Log in first.")
        return user

    async def require_csrf(request: Request, token: str | None) -> None:
        if not csrf_ok(request.session, token):
            raise _Refused(403, "The form was stale or did not come from this site (CSRF token missing or wrong).")

    def page(request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("user", request.session.get("user"))
        values["csrf"] = _LazyToken(request.session)
        return templates.TemplateResponse(request, name, values, status_code=status)

    @app.exception_handler(_Redirect)
    async def redirect(_request: Request, exc: _Redirect) -> Response:
        return RedirectResponse(exc.to, status_code=303)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        headers = {"Retry-After": str(max(1, round(exc.retry_after)))} if exc.retry_after else None
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.message}, exc.status, headers=headers)
        response = page(request, "error.html", exc.status, message=exc.message)
        if headers:
            response.headers.update(headers)
        return response

    async def run_check(request: Request, ip: str, helo: str | None, sender: str | None, page_name: str) -> Report:
        try:
            address = parse_ip(ip.strip())
        except ValueError:
            METRICS.count_web(page_name, "bad_request")
            raise _Refused(400, f"{ip!r} is not an IP address.") from None
        anonymous = await admin_of(request) is None
        if anonymous:
            wait = checks_limiter.allow(visitor(request), time.monotonic())
            if wait:
                METRICS.count_web(page_name, "rate_limited")
                raise _Refused(429, f"Too many checks from your address; try again in {wait:.0f} s.", wait)
            if running[0] >= web.max_concurrent_checks:
                METRICS.count_web(page_name, "busy")
                raise _Refused(503, "Too many checks are running right now; try again in a few seconds.", 5)
        running[0] += anonymous
        try:
            report = await engine.report(address, helo or None, sender or None)
        finally:
            running[0] -= anonymous
        METRICS.count_web(page_name, overall(report).value)
        return report

    # -- public ---------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home(request: Request) -> HTMLResponse:
        return page(request, "check.html", form={"ip": visitor(request), "helo": "", "sender": ""}, result=None)

    @app.get("/check", response_class=HTMLResponse, include_in_schema=False)
    async def check_page(
        request: Request,
        ip: Annotated[str, Query(max_length=100)] = "",
        helo: Annotated[str, Query(max_length=255)] = "",
        sender: Annotated[str, Query(max_length=320)] = "",
    ) -> HTMLResponse:
        form = {"ip": ip or visitor(request), "helo": helo, "sender": sender}
        if not ip.strip():
            return page(request, "check.html", form=form, result=None)
        try:
            report = await run_check(request, ip, helo, sender, "check")
        except _Refused as exc:
            return page(request, "check.html", exc.status, form=form, result=None, error=exc.message)
        now = datetime.now(UTC)
        decisions = {name: decide(report, profile) for name, profile in BUILTIN.items()}
        wait = recheck_after(report)
        share = "/check?" + urlencode({k: v for k, v in (("ip", ip), ("helo", helo), ("sender", sender)) if v})
        return page(
            request,
            "check.html",
            form=form,
            result=report,
            verdict=overall(report).value,
            picture=chain_picture(report),
            decisions=decisions,
            advice=advise(report, now),
            recheck=None if wait is None else (wait, now + timedelta(seconds=wait)),
            share=share,
            api="/api/v1" + share,
        )

    @app.get(
        "/api/v1/check",
        summary="Check one mail client",
        responses={400: {"model": ApiError}, 429: {"model": ApiError}, 503: {"model": ApiError}},
        tags=["check"],
        response_model=ReportModel,
        response_model_exclude_unset=True,
        response_model_by_alias=True,
    )
    async def api_check(
        request: Request,
        ip: Annotated[str, Query(max_length=100, description="The client's IPv4 or IPv6 address.")],
        helo: Annotated[str | None, Query(max_length=255, description="The HELO/EHLO name it announces.")] = None,
        sender: Annotated[
            str | None, Query(max_length=320, description="The MAIL FROM address; '<>' for a bounce.")
        ] = None,
    ) -> dict[str, Any]:
        """The chain IP → PTR → A/AAAA → HELO → sender domain, each check's result, what each profile
        would answer, and the fix steps: the same object as `rdnsgate check --json` (docs/check-json.md)."""
        report = await run_check(request, ip, helo, sender, "api")
        return report_dict(report, {name: decide(report, profile) for name, profile in BUILTIN.items()})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        try:
            await asyncio.wait_for(store.admin_count(), 5)
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "detail": f"store: {type(exc).__name__}"}, 503)
        return JSONResponse({"status": "ok", "version": __version__})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        entries = await store.fleet_list()
        counts: dict[str, int] = {}
        for entry in entries:
            counts[entry.state] = counts.get(entry.state, 0) + 1
        METRICS.fleet_states = counts
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # -- login ------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(request: Request, next: str = "/servers") -> HTMLResponse:
        return page(request, "login.html", next=_local(next), error=None)

    @app.post("/login", include_in_schema=False)
    async def login(
        request: Request,
        username: Annotated[str, Form(max_length=64)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        csrf: Annotated[str | None, Form()] = None,
        next: Annotated[str, Form()] = "/servers",
    ) -> Response:
        await require_csrf(request, csrf)
        wait = login_limiter.allow(visitor(request), time.monotonic())
        if wait:
            raise _Refused(429, f"Too many login attempts; try again in {wait:.0f} s.", wait)
        stored = await store.admin_password_hash(username)
        if not await asyncio.to_thread(verify_password, stored, password) or stored is None:
            log.warning("failed login for %r from %s", username, visitor(request))
            return page(request, "login.html", 401, next=_local(next), error="Wrong user name or password.")
        request.session.clear()
        request.session.update({"user": username, "pw": fingerprint(stored)})
        log.info("%s logged in from %s", username, visitor(request))
        return RedirectResponse(_local(next), status_code=303)

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request, csrf: Annotated[str | None, Form()] = None) -> Response:
        await require_csrf(request, csrf)
        request.session.clear()
        return RedirectResponse("/", status_code=303)

    # -- servers (fleet) ---------------------------------------------------------------------
    @app.get("/servers", response_class=HTMLResponse, include_in_schema=False)
    async def servers(request: Request) -> HTMLResponse:
        await require_admin(request)
        return page(request, "servers.html", entries=await store.fleet_list(), error=None)

    @app.post("/servers", include_in_schema=False)
    async def servers_add(
        request: Request,
        ip: Annotated[str, Form(max_length=100)] = "",
        helo: Annotated[str, Form(max_length=255)] = "",
        label: Annotated[str, Form(max_length=100)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        await require_admin(request)
        await require_csrf(request, csrf)
        try:
            address = str(parse_ip(ip.strip()))
        except ValueError:
            entries = await store.fleet_list()
            return page(request, "servers.html", 400, entries=entries, error=f"{ip!r} is not an IP address.")
        await store.fleet_add(FleetEntry(address, helo.strip() or None, label.strip()))
        log.info("%s watches %s (%s)", request.session.get("user"), address, label)
        return RedirectResponse("/servers", status_code=303)

    @app.post("/servers/{ip}/remove", include_in_schema=False)
    async def servers_remove(request: Request, ip: str, csrf: Annotated[str | None, Form()] = None) -> Response:
        await require_admin(request)
        await require_csrf(request, csrf)
        await store.fleet_remove(ip)
        log.info("%s stopped watching %s", request.session.get("user"), ip)
        return RedirectResponse("/servers", status_code=303)

    @app.post("/servers/{ip}/accept", include_in_schema=False)
    async def servers_accept(request: Request, ip: str, csrf: Annotated[str | None, Form()] = None) -> Response:
        user = await require_admin(request)
        await require_csrf(request, csrf)
        entry = await store.fleet_get(ip)
        if entry is None:
            raise _Refused(404, f"{ip} is not watched.")
        try:
            accepted = accept_current(entry, datetime.now(UTC))
        except ValueError as exc:
            raise _Refused(400, str(exc)) from None
        await store.fleet_save_state(accepted)
        log.info("%s accepted the chain of %s as good: %s", user, ip, accepted.last_good)
        return RedirectResponse(f"/servers/{quote(ip, safe='')}", status_code=303)

    @app.get("/servers/{ip}", response_class=HTMLResponse, include_in_schema=False)
    async def server_page(request: Request, ip: str, span: str = "") -> HTMLResponse:
        await require_admin(request)
        entry = await store.fleet_get(ip)
        if entry is None:
            raise _Refused(404, f"{ip} is not watched.")
        now = datetime.now(UTC)
        if span not in TIMELINE_SPANS:  # by default, the shortest span that holds the whole history
            first = await store.fleet_history(ip, limit=1, oldest=True)
            age = now - first[0]["at"] if first else timedelta(0)
            span = next((name for name, length in TIMELINE_SPANS.items() if age <= length), "30d")
        window = TIMELINE_SPANS[span]
        history = await store.fleet_history(ip, since=now - window - timedelta(days=1))
        return page(
            request,
            "server.html",
            entry=entry,
            chart=timeline(history, now, window),
            span=span,
            spans=list(TIMELINE_SPANS),
            changes=chain_changes(history)[::-1],
            alerts=await store.fleet_alerts(ip),
            last=history[-1] if history else None,
        )

    # -- whitelist ------------------------------------------------------------------------------
    async def whitelist_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
        now = datetime.now(UTC)
        return page(request, "whitelist.html", status, entries=await store.whitelist_list(), now=now, error=error)

    @app.get("/whitelist", response_class=HTMLResponse, include_in_schema=False)
    async def whitelist(request: Request) -> HTMLResponse:
        await require_admin(request)
        return await whitelist_page(request)

    @app.post("/whitelist", include_in_schema=False)
    async def whitelist_add(
        request: Request,
        target: Annotated[str, Form(max_length=300)] = "",
        reason: Annotated[str, Form(max_length=2000)] = "",
        ticket: Annotated[str, Form(max_length=100)] = "",
        expires: Annotated[str, Form(max_length=50)] = "",
        csrf: Annotated[str | None, Form()] = None,
    ) -> Response:
        user = await require_admin(request)
        await require_csrf(request, csrf)
        now = datetime.now(UTC)
        try:
            if not reason.strip():
                raise UsageError("say why this sender may skip the checks (reason)")
            kind, value = parse_target(target)
            entry = WhitelistEntry(kind, value, reason.strip(), ticket.strip() or None, now, parse_expiry(expires, now))
        except UsageError as exc:
            return await whitelist_page(request, 400, str(exc))
        await store.whitelist_add(entry)
        log.info("%s whitelisted %s: %s", user, value, entry.reason)
        return RedirectResponse("/whitelist", status_code=303)

    @app.post("/whitelist/{entry_id}/remove", include_in_schema=False)
    async def whitelist_remove(request: Request, entry_id: int, csrf: Annotated[str | None, Form()] = None) -> Response:
        user = await require_admin(request)
        await require_csrf(request, csrf)
        await store.whitelist_remove_id(entry_id)
        log.info("%s removed whitelist entry #%d", user, entry_id)
        return RedirectResponse("/whitelist", status_code=303)

    # -- decisions ---------------------------------------------------------------------------------
    @app.get("/decisions", response_class=HTMLResponse, include_in_schema=False)
    async def decisions(
        request: Request,
        ip: Annotated[str, Query(max_length=100)] = "",
        sender: Annotated[str, Query(max_length=320)] = "",
        helo: Annotated[str, Query(max_length=255)] = "",
        since: Annotated[str, Query(max_length=50)] = "24h",
        until: Annotated[str, Query(max_length=50)] = "",
    ) -> HTMLResponse:
        await require_admin(request)
        form = {"ip": ip, "sender": sender, "helo": helo, "since": since, "until": until}
        now = datetime.now(UTC)
        try:
            client = None
            if ip.strip():
                try:
                    client = str(ipaddress.ip_address(ip.strip()))
                except ValueError:
                    raise UsageError(f"{ip!r} is not an IP address") from None
            found = await store.decisions_find(
                ip=client,
                sender=sender.strip() or None,
                helo=helo.strip() or None,
                since=parse_moment(since, now, ago=True) if since.strip() else None,
                until=parse_moment(until, now, ago=True) if until.strip() else None,
                limit=200,
            )
        except UsageError as exc:
            return page(request, "decisions.html", 400, form=form, rows=[], error=str(exc))
        rows = [(record, explain(record)) for record in found]
        return page(request, "decisions.html", form=form, rows=rows, error=None)

    return app


class _LazyToken:
    """The session's CSRF token, made only when a page renders a form that needs it,
    so anonymous visitors of the check page get no cookie at all."""

    def __init__(self, session: dict[str, Any]) -> None:
        self.session = session

    def __str__(self) -> str:
        return csrf_token(self.session)


def _local(target: str) -> str:
    """Only paths on this site: never redirect a login to somewhere else."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/servers"
    return target


class EmbeddedServer(uvicorn.Server):
    """uvicorn's server without its own signal handling: the daemon's stop event ends it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
