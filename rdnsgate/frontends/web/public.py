"""The public pages: the check page and its JSON API (rate-limited), /healthz, /metrics."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from rdnsgate import __version__
from rdnsgate.frontends.web.api import ApiError
from rdnsgate.frontends.web.exceptions import offer
from rdnsgate.frontends.web.pictures import chain_picture
from rdnsgate.frontends.web.schema import ReportModel
from rdnsgate.frontends.web.site import Refused, SiteDep
from rdnsgate.monitor.fleet import source_note
from rdnsgate.monitor.metrics import METRICS, REGISTRY
from rdnsgate.policy.advice import advise, recheck_after
from rdnsgate.policy.decide import decide
from rdnsgate.policy.profiles import BUILTIN
from rdnsgate.policy.receivers import CAVEAT, predict
from rdnsgate.policy.serialize import overall, report_dict

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def home(request: Request, site: SiteDep) -> HTMLResponse:
    return site.page(request, "check.html", form={"ip": site.visitor(request), "helo": "", "sender": ""}, result=None)


@router.get("/check", response_class=HTMLResponse, include_in_schema=False)
async def check_page(
    request: Request,
    site: SiteDep,
    ip: Annotated[str, Query(max_length=100)] = "",
    helo: Annotated[str, Query(max_length=255)] = "",
    sender: Annotated[str, Query(max_length=320)] = "",
    t: Annotated[str, Query(max_length=200)] = "",
    authoritative: bool = False,
) -> HTMLResponse:
    """The check of one client; opened from a refusal's link (with its token `t`), also the way to ask for
    a temporary exception (frontends/web/exceptions.py)."""
    form = {"ip": ip or site.visitor(request), "helo": helo, "sender": sender, "authoritative": authoritative}
    if not ip.strip():
        return site.page(request, "check.html", form=form, result=None)
    try:
        report = await site.run_check(request, ip, helo, sender, "check")
    except Refused as exc:
        return site.page(request, "check.html", exc.status, form=form, result=None, error=exc.message)
    now = datetime.now(UTC)
    at_source = await site.at_source(report.ip) if authoritative else None
    decisions = {name: decide(report, profile) for name, profile in BUILTIN.items()}
    wait = recheck_after(report)
    share = "/check?" + urlencode({k: v for k, v in (("ip", ip), ("helo", helo), ("sender", sender)) if v})
    return site.page(
        request,
        "check.html",
        form=form,
        result=report,
        verdict=overall(report).value,
        picture=chain_picture(report),
        decisions=decisions,
        exception=await offer(site, site.link_claim(ip, t), report) if t else None,
        at_source=at_source,
        source_note=source_note(report.iprev, at_source, now) if at_source is not None else None,
        token=t,
        receivers=predict(report),
        caveat=CAVEAT,
        advice=advise(report, now),
        recheck=None if wait is None else (wait, now + timedelta(seconds=wait)),
        share=share,
        api="/api/v1" + share,
    )


@router.get(
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
    site: SiteDep,
    ip: Annotated[str, Query(max_length=100, description="The client's IPv4 or IPv6 address.")],
    helo: Annotated[str | None, Query(max_length=255, description="The HELO/EHLO name it announces.")] = None,
    sender: Annotated[
        str | None, Query(max_length=320, description="The MAIL FROM address; '<>' for a bounce.")
    ] = None,
) -> dict[str, Any]:
    """The chain IP → PTR → A/AAAA → HELO → sender domain, each check's result, what each profile
    would answer, and the fix steps: the same object as `rdnsgate check --json` (docs/check-json.md)."""
    report = await site.run_check(request, ip, helo, sender, "api")
    return report_dict(report, {name: decide(report, profile) for name, profile in BUILTIN.items()})


@router.get("/healthz", include_in_schema=False)
async def healthz(site: SiteDep) -> JSONResponse:
    """200 while the process serves: `ok`, or `degraded` with the reason while the store is away or the
    resolver cannot be trusted.

    Mail keeps flowing without the store (docs/deploy-multinode.md), so a
    store away is not a reason for a load balancer to take the node out.
    """
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    problem = None
    try:
        await asyncio.wait_for(site.store.admin_count(), HEALTH_SECONDS)
    except Exception as exc:
        problem = f"{type(exc).__name__}: {str(exc).strip()[:200]}" if str(exc).strip() else type(exc).__name__
    if site.decisions is not None:
        body["decision_backlog"] = site.decisions.backlog
        body["decisions_dropped"] = site.decisions.dropped
        problem = problem or site.decisions.store_error
    if problem:
        body.update(status="degraded", store=f"unavailable: {problem}")
    dns = site.engine.dns_problem()
    if dns:  # no 5xx is given meanwhile (lookups/health.py)
        body.update(status="degraded", dns=f"unhealthy: {dns}")
    return JSONResponse(body)


HEALTH_SECONDS = 3.0


@router.get("/metrics", include_in_schema=False)
async def metrics(site: SiteDep) -> Response:
    METRICS.fleet_states = dict(Counter(entry.state for entry in await site.store.fleet_list()))
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
