"""The admin pages (login required): login, servers (the fleet), whitelist, decisions.

Every POST carries the session's CSRF token; every state change is logged
with the admin's name.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rdnsgate.access import Permission, may
from rdnsgate.errors import UsageError
from rdnsgate.frontends.web.pictures import chain_changes, timeline
from rdnsgate.frontends.web.site import (
    CsrfDep,
    DecisionsReader,
    FleetReader,
    FleetWriter,
    Refused,
    SiteDep,
    WhitelistReader,
    WhitelistWriter,
    local_path,
    site_of,
)
from rdnsgate.model import WhitelistEntry
from rdnsgate.monitor.fleet import accept_server
from rdnsgate.monitor.fleet_csv import fleet_entry
from rdnsgate.passwords import fingerprint, verify_password
from rdnsgate.policy.decision_log import explain, search_terms
from rdnsgate.policy.whitelist import parse_expiry, parse_target

log = logging.getLogger("rdnsgate.web")
router = APIRouter(include_in_schema=False)
TIMELINE_SPANS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}


# -- login ------------------------------------------------------------------------------
@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, site: SiteDep, next: str = "/servers") -> HTMLResponse:
    return site.page(request, "login.html", next=local_path(next), error=None)


@router.post("/login", include_in_schema=False)
async def login(
    request: Request,
    site: SiteDep,
    _csrf: CsrfDep,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form()] = "/servers",
) -> Response:
    wait = site.login_limiter.allow(site.visitor(request), time.monotonic())
    if wait:
        raise Refused(429, f"Too many login attempts; try again in {wait:.0f} s.", wait)
    found = await site.store.admin_login(username)
    stored, role = found or (None, "")
    if not await asyncio.to_thread(verify_password, stored, password) or stored is None:
        log.warning("failed login for %r from %s", username, site.visitor(request))
        return site.page(request, "login.html", 401, next=local_path(next), error="Wrong user name or password.")
    request.session.clear()
    request.session.update({"user": username, "pw": fingerprint(stored), "role": role})
    log.info("%s (%s) logged in from %s", username, role, site.visitor(request))
    target = local_path(next)
    if target == "/servers" and not may(role, Permission.FLEET_READ):
        target = "/whitelist"  # the helpdesk's first page
    return RedirectResponse(target, status_code=303)


@router.post("/logout", include_in_schema=False)
async def logout(request: Request, _csrf: CsrfDep) -> Response:
    request.session.clear()
    return RedirectResponse("/", status_code=303)


# -- servers (fleet) ---------------------------------------------------------------------
@router.get("/servers", response_class=HTMLResponse, include_in_schema=False)
async def servers(request: Request, site: SiteDep, _user: FleetReader) -> HTMLResponse:
    return site.page(request, "servers.html", entries=await site.store.fleet_list(), error=None)


@router.post("/servers", include_in_schema=False)
async def servers_add(
    request: Request,
    site: SiteDep,
    user: FleetWriter,
    _csrf: CsrfDep,
    ip: Annotated[str, Form(max_length=100)] = "",
    helo: Annotated[str, Form(max_length=255)] = "",
    label: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    try:
        entry = fleet_entry(ip, helo, label)
    except UsageError as exc:
        entries = await site.store.fleet_list()
        return site.page(request, "servers.html", 400, entries=entries, error=f"{exc}.")
    await site.store.fleet_add(entry, user.actor)
    log.info("%s watches %s (%s)", user.actor, entry.ip, entry.label)
    return RedirectResponse("/servers", status_code=303)


@router.post("/servers/{ip}/remove", include_in_schema=False)
async def servers_remove(ip: str, site: SiteDep, user: FleetWriter, _csrf: CsrfDep) -> Response:
    await site.store.fleet_remove(ip, user.actor)
    log.info("%s stopped watching %s", user.actor, ip)
    return RedirectResponse("/servers", status_code=303)


@router.post("/servers/{ip}/accept", include_in_schema=False)
async def servers_accept(ip: str, site: SiteDep, user: FleetWriter, _csrf: CsrfDep) -> Response:
    try:
        accepted = await accept_server(site.store, ip, datetime.now(UTC))
    except LookupError:
        raise Refused(404, f"{ip} is not watched.") from None
    except ValueError as exc:
        raise Refused(400, str(exc)) from None
    log.info("%s accepted the chain of %s as good: %s", user.actor, ip, accepted.last_good)
    return RedirectResponse(f"/servers/{quote(ip, safe='')}", status_code=303)


@router.get("/servers/{ip}", response_class=HTMLResponse, include_in_schema=False)
async def server_page(request: Request, ip: str, site: SiteDep, _user: FleetReader, span: str = "") -> HTMLResponse:
    entry = await site.store.fleet_get(ip)
    if entry is None:
        raise Refused(404, f"{ip} is not watched.")
    now = datetime.now(UTC)
    if span not in TIMELINE_SPANS:  # by default, the shortest span that holds the whole history
        first = await site.store.fleet_history(ip, limit=1, oldest=True)
        age = now - first[0]["at"] if first else timedelta(0)
        span = next((name for name, length in TIMELINE_SPANS.items() if age <= length), "30d")
    window = TIMELINE_SPANS[span]
    history = await site.store.fleet_history(ip, since=now - window - timedelta(days=1))
    return site.page(
        request,
        "server.html",
        entry=entry,
        chart=timeline(history, now, window),
        span=span,
        spans=list(TIMELINE_SPANS),
        changes=chain_changes(history)[::-1],
        alerts=await site.store.fleet_alerts(ip),
        last=history[-1] if history else None,
    )


# -- whitelist ------------------------------------------------------------------------------
async def whitelist_page(request: Request, status: int = 200, error: str | None = None) -> HTMLResponse:
    site = site_of(request)
    now = datetime.now(UTC)
    return site.page(
        request,
        "whitelist.html",
        status,
        entries=await site.store.whitelist_list(),
        changes=await site.store.changes_list(("whitelist", "exception"), limit=20),
        requests=await site.store.exception_list("pending"),
        now=now,
        error=error,
    )


@router.get("/whitelist", response_class=HTMLResponse, include_in_schema=False)
async def whitelist(request: Request, _user: WhitelistReader) -> HTMLResponse:
    return await whitelist_page(request)


@router.post("/whitelist", include_in_schema=False)
async def whitelist_add(
    request: Request,
    site: SiteDep,
    user: WhitelistWriter,
    _csrf: CsrfDep,
    target: Annotated[str, Form(max_length=300)] = "",
    reason: Annotated[str, Form(max_length=2000)] = "",
    ticket: Annotated[str, Form(max_length=100)] = "",
    expires: Annotated[str, Form(max_length=50)] = "",
) -> Response:
    now = datetime.now(UTC)
    try:
        if not reason.strip():
            raise UsageError("say why this sender may skip the checks (reason)")
        kind, value = parse_target(target)
        entry = WhitelistEntry(kind, value, reason.strip(), ticket.strip() or None, now, parse_expiry(expires, now))
    except UsageError as exc:
        return await whitelist_page(request, 400, str(exc))
    await site.store.whitelist_add(entry, user.actor)
    log.info("%s whitelisted %s: %s", user.actor, value, entry.reason)
    return RedirectResponse("/whitelist", status_code=303)


@router.post("/whitelist/{entry_id}/remove", include_in_schema=False)
async def whitelist_remove(entry_id: int, site: SiteDep, user: WhitelistWriter, _csrf: CsrfDep) -> Response:
    await site.store.whitelist_remove_id(entry_id, user.actor)
    log.info("%s removed whitelist entry #%d", user.actor, entry_id)
    return RedirectResponse("/whitelist", status_code=303)


# -- decisions ---------------------------------------------------------------------------------
@router.get("/decisions", response_class=HTMLResponse, include_in_schema=False)
async def decisions(
    request: Request,
    site: SiteDep,
    _user: DecisionsReader,
    ip: Annotated[str, Query(max_length=100)] = "",
    sender: Annotated[str, Query(max_length=320)] = "",
    helo: Annotated[str, Query(max_length=255)] = "",
    since: Annotated[str, Query(max_length=50)] = "24h",
    until: Annotated[str, Query(max_length=50)] = "",
) -> HTMLResponse:
    form = {"ip": ip, "sender": sender, "helo": helo, "since": since, "until": until}
    try:
        terms = search_terms(ip, sender, helo, since, until, datetime.now(UTC))
    except UsageError as exc:
        return site.page(request, "decisions.html", 400, form=form, rows=[], error=str(exc))
    found = await site.store.decisions_find(**terms, limit=200)
    rows = [(record, explain(record)) for record in found]
    return site.page(request, "decisions.html", form=form, rows=rows, error=None)
