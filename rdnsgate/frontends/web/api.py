"""The management API for helpdesks and provisioning: whitelist, fleet, decisions (``/api/v1``).

Callers send ``Authorization: Bearer TOKEN`` (``rdnsgate admin token
create``); a logged-in browser session works too, a change then needs the
X-CSRF-Token header (`Site.api_caller`).  Roles: ``helpdesk`` reads the
decision log and manages the whitelist, ``admin`` everything.  Every
change is recorded with who made it (``token:NAME``, ``web:USER``).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from rdnsgate.access import Permission
from rdnsgate.errors import UsageError
from rdnsgate.frontends.web.site import Login, Refused, SiteDep, api_allowed
from rdnsgate.model import FleetEntry, WhitelistEntry
from rdnsgate.monitor.fleet_csv import fleet_dict, fleet_entry
from rdnsgate.policy.decision_log import record_dict, search_terms
from rdnsgate.policy.whitelist import entry_dict, parse_expiry, parse_target

log = logging.getLogger("rdnsgate.web")
router = APIRouter(prefix="/api/v1")
MAX_FLEET_POST = 1000


class ApiError(BaseModel):
    detail: str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WhitelistIn(_Strict):
    target: str = Field(max_length=300, description="IP address, network (CIDR) or sender domain")
    reason: str = Field(min_length=1, max_length=2000, description="why this sender may skip the checks")
    ticket: str | None = Field(None, max_length=100, description="the helpdesk's ticket, e.g. HD-123")
    expires: str | None = Field(
        None, max_length=50, description="30d, 12h, 90m, 2w, an ISO date, or never (the default)"
    )


class WhitelistOut(BaseModel):
    id: int
    kind: str = Field(description="network or domain")
    value: str = Field(description="the network (a single IP is a /32 or /128) or the domain, in A-labels")
    reason: str
    ticket: str | None
    created_at: str | None
    expires_at: str | None = Field(description="null: never")
    changed_by: str = Field(description="who added or last changed it: web:USER, token:NAME, cli:USER")
    changed_at: str | None


class FleetIn(_Strict):
    ip: str = Field(max_length=100, description="the sending server's IP address")
    helo: str | None = Field(None, max_length=255, description="the HELO name it announces")
    label: str = Field("", max_length=100, description="a name for people, e.g. eu-1")


class FleetOut(BaseModel):
    ip: str
    helo: str | None
    label: str
    state: str = Field(description="unknown, ok, broken, drifted (docs/monitor.md)")
    since: str | None
    last_checked: str | None
    changed_by: str
    changed_at: str | None


class FleetAdded(BaseModel):
    added: int = Field(description="servers newly watched")
    updated: int = Field(description="servers watched already (their HELO and label are the request's now)")
    servers: list[FleetOut]


class DecisionOut(BaseModel):
    at: str
    session: str
    client_ip: str
    ptr: str | None
    helo: str | None
    sender: str | None
    recipients: list[str]
    profile: str
    action: str = Field(description="accept, tag, tempfail or reject")
    stage: str | None
    reply: str | None
    checks: dict[str, Any]
    whitelisted: str | None
    node: str


AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ApiError, "description": "no token, or an unknown or revoked one"}
}
DENIED: dict[int | str, dict[str, Any]] = {403: {"model": ApiError, "description": "the token's role may not do this"}}
WhitelistReader = Annotated[Login, api_allowed(Permission.WHITELIST_READ)]
WhitelistWriter = Annotated[Login, api_allowed(Permission.WHITELIST_WRITE)]
FleetReader = Annotated[Login, api_allowed(Permission.FLEET_READ)]
FleetWriter = Annotated[Login, api_allowed(Permission.FLEET_WRITE)]
DecisionsReader = Annotated[Login, api_allowed(Permission.DECISIONS_READ)]


# -- whitelist ---------------------------------------------------------------------------------------------------
@router.get(
    "/whitelist",
    summary="The whitelist",
    tags=["whitelist"],
    response_model=list[WhitelistOut],
    responses={**AUTH, **DENIED},
)
async def whitelist_list(
    site: SiteDep,
    _caller: WhitelistReader,
    all: Annotated[bool, Query(description="include expired entries")] = False,
) -> list[dict[str, Any]]:
    """Every entry still active (with `all=true`, the expired ones too), oldest first."""
    entries = await site.store.whitelist_list(None if all else datetime.now(UTC))
    return [entry_dict(entry) for entry in entries]


@router.post(
    "/whitelist",
    summary="Add (or renew) a whitelist entry",
    tags=["whitelist"],
    status_code=201,
    response_model=WhitelistOut,
    responses={
        200: {"model": WhitelistOut, "description": "the entry existed: it was updated"},
        400: {"model": ApiError},
        **AUTH,
        **DENIED,
    },
)
async def whitelist_add(
    response: Response, site: SiteDep, caller: WhitelistWriter, body: Annotated[WhitelistIn, Body()]
) -> dict[str, Any]:
    """Let a misconfigured but legitimate sender through: 201 when new, 200 when an entry for the same
    IP, network or domain was updated. Running gateways see it within seconds."""
    now = datetime.now(UTC)
    try:
        if not body.reason.strip():
            raise UsageError("say why this sender may skip the checks (reason)")
        kind, value = parse_target(body.target)
        entry = WhitelistEntry(
            kind, value, body.reason.strip(), (body.ticket or "").strip() or None, now, parse_expiry(body.expires, now)
        )
    except UsageError as exc:
        raise Refused(400, str(exc)) from None
    saved, created = await site.store.whitelist_add(entry, caller.actor)
    response.status_code = 201 if created else 200
    log.info("%s whitelisted %s: %s", caller.actor, value, entry.reason)
    return entry_dict(saved)


@router.delete(
    "/whitelist/{entry_id}",
    summary="Remove a whitelist entry by its id",
    tags=["whitelist"],
    status_code=204,
    responses={404: {"model": ApiError}, **AUTH, **DENIED},
)
async def whitelist_remove(
    site: SiteDep, caller: WhitelistWriter, entry_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> Response:
    if not await site.store.whitelist_remove_id(entry_id, caller.actor):
        raise Refused(404, f"there is no whitelist entry #{entry_id}")
    log.info("%s removed whitelist entry #%d", caller.actor, entry_id)
    return Response(status_code=204)


@router.delete(
    "/whitelist",
    summary="Remove the whitelist entry of an IP, network or domain",
    tags=["whitelist"],
    status_code=204,
    responses={400: {"model": ApiError}, 404: {"model": ApiError}, **AUTH, **DENIED},
)
async def whitelist_remove_target(
    site: SiteDep,
    caller: WhitelistWriter,
    target: Annotated[str, Query(max_length=300, description="the IP, network or domain as added")],
) -> Response:
    try:
        kind, value = parse_target(target)
    except UsageError as exc:
        raise Refused(400, str(exc)) from None
    if not await site.store.whitelist_remove(kind, value, caller.actor):
        raise Refused(404, f"{value} is not on the whitelist")
    log.info("%s removed %s from the whitelist", caller.actor, value)
    return Response(status_code=204)


# -- fleet ----------------------------------------------------------------------------------------------------------
@router.get(
    "/fleet",
    summary="The watched sending servers",
    tags=["fleet"],
    response_model=list[FleetOut],
    responses={**AUTH, **DENIED},
)
async def fleet_list(site: SiteDep, _caller: FleetReader) -> list[dict[str, Any]]:
    return [fleet_dict(entry) for entry in await site.store.fleet_list()]


@router.post(
    "/fleet",
    summary="Watch sending servers (a list: provisioning many at once)",
    tags=["fleet"],
    response_model=FleetAdded,
    responses={400: {"model": ApiError}, **AUTH, **DENIED},
)
async def fleet_add(
    site: SiteDep,
    caller: FleetWriter,
    body: Annotated[list[FleetIn], Body(min_length=1, max_length=MAX_FLEET_POST)],
) -> dict[str, Any]:
    """Every server is checked first; a bad one is named by its index and nothing is stored. Servers watched
    already get the request's HELO and label."""
    entries: dict[str, FleetEntry] = {}
    for index, item in enumerate(body):
        try:
            entry = fleet_entry(item.ip, item.helo, item.label)
        except UsageError as exc:
            raise Refused(400, f"server {index}: {exc}") from None
        entries[entry.ip] = entry
    done = await site.store.fleet_add_many(list(entries.values()), caller.actor)
    added = sum(created for _entry, created in done)
    log.info("%s watches %d servers (%d new)", caller.actor, len(done), added)
    return {"added": added, "updated": len(done) - added, "servers": [fleet_dict(entry) for entry, _new in done]}


@router.delete(
    "/fleet/{ip}",
    summary="Stop watching a server",
    tags=["fleet"],
    status_code=204,
    responses={404: {"model": ApiError}, **AUTH, **DENIED},
)
async def fleet_remove(site: SiteDep, caller: FleetWriter, ip: Annotated[str, Path(max_length=100)]) -> Response:
    if not await site.store.fleet_remove(ip.strip(), caller.actor):
        raise Refused(404, f"{ip.strip()} is not watched")
    log.info("%s stopped watching %s", caller.actor, ip.strip())
    return Response(status_code=204)


# -- decisions ------------------------------------------------------------------------------------------------------
@router.get(
    "/decisions",
    summary="Search the decision log",
    tags=["decisions"],
    response_model=list[DecisionOut],
    responses={400: {"model": ApiError}, **AUTH, **DENIED},
)
async def decisions(
    site: SiteDep,
    _caller: DecisionsReader,
    ip: Annotated[str, Query(max_length=100, description="the client's IP address")] = "",
    sender: Annotated[str, Query(max_length=320, description="the sender address, or part of it")] = "",
    helo: Annotated[str, Query(max_length=255, description="the HELO name, or part of it")] = "",
    since: Annotated[str, Query(max_length=50, description="2h, 30m, 7d ago, or an ISO time")] = "24h",
    until: Annotated[str, Query(max_length=50, description="an ISO time")] = "",
    limit: Annotated[int, Query(ge=1, le=1000, description="at most this many, newest first")] = 100,
) -> list[dict[str, Any]]:
    """The same search as the /decisions page and `rdnsgate decisions --json`."""
    try:
        terms = search_terms(ip, sender, helo, since, until, datetime.now(UTC))
    except UsageError as exc:
        raise Refused(400, str(exc)) from None
    return [record_dict(record) for record in await site.store.decisions_find(**terms, limit=limit)]
