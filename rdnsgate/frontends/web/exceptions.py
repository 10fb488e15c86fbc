"""Self-service exceptions: a refused sender asks from the refusal's link; the helpdesk grants or refuses.

The check page opened from a refusal (``/check?ip=IP&t=TOKEN``) shows the
diagnosis and, when the token is valid for that IP (policy/exceptions.py)
and ``exceptions.mode`` allows it, a form.  ``POST /exception`` asks: with
``auto`` a whitelist entry is added at once (reason "self-service", the
refusal's id as ticket, ``exceptions.days``); with ``approve`` the request
waits on /whitelist, where one click grants or refuses it, and goes to the
webhook.  Each step is logged and in the change log.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from rdnsgate.checks.names import parse_ip
from rdnsgate.frontends.web.site import CsrfDep, Refused, Site, SiteDep, WhitelistWriter, site_of
from rdnsgate.model import Report
from rdnsgate.policy.exceptions import LinkClaim, refusal_of

log = logging.getLogger("rdnsgate.exceptions")
router = APIRouter(include_in_schema=False)


def check_of(report: Report, name: str) -> Any:
    return next((item for item in report.checks if item.check.value == name), None)


async def offer(site: Site, claim: LinkClaim | None, report: Report | None) -> dict[str, Any] | None:
    """What the check page says about an exception: None without a valid link, else the offer or why not."""
    if claim is None:
        return None
    now = datetime.now(UTC)
    outcome = check_of(report, claim.check) if report is not None else None
    if outcome is not None and not outcome.failed:
        return {"claim": claim, "refused": f"the {claim.check} check passes now: no exception is needed"}
    if await site.store.exception_refusal_used(claim.id):
        return {"claim": claim, "refused": "this refusal's link was used already"}
    recent = await site.store.exception_recent(claim.ip, now - timedelta(days=site.exceptions.per_ip_days))
    why = refusal_of(claim, site.exceptions, outcome.reason if outcome is not None else None, recent)
    return {"claim": claim, "refused": why, "mode": site.exceptions.mode, "days": site.exceptions.days}


@router.post("/exception", response_class=HTMLResponse)
async def ask(
    request: Request,
    site: SiteDep,
    _csrf: CsrfDep,
    ip: Annotated[str, Form(max_length=100)] = "",
    t: Annotated[str, Form(max_length=200)] = "",
    message: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    visitor = site.visitor(request)
    wait = site.exception_limiter.allow(visitor, time.monotonic())
    if wait:
        raise Refused(429, f"Too many requests from your address; try again in {wait:.0f} s.", wait)
    try:
        address = str(parse_ip(ip.strip()))
    except ValueError:
        raise Refused(400, f"{ip!r} is not an IP address.") from None
    claim = site.link_claim(address, t)
    if claim is None:
        log.warning("exception request for %s from %s: no valid link", address, visitor)
        raise Refused(403, "This link cannot ask for an exception: it is not valid for this address, or too old.")
    report = await site.engine.report(parse_ip(address))
    found = await offer(site, claim, report)
    assert found is not None
    if found["refused"]:
        log.info("exception request for %s (%s) from %s not taken: %s", address, claim.check, visitor, found["refused"])
        raise Refused(409, f"No exception: {found['refused']}.")
    words = " ".join(message.split())[:500]
    if site.exceptions.mode == "auto":
        until = await site.store.exception_grant_now(
            address, claim.check, claim.id, words, visitor, site.exceptions.days
        )
        log.info(
            "exception granted at once to %s (%s failed, refusal %s) until %s", address, claim.check, claim.id, until
        )
        return site.page(request, "exception.html", ip=address, state="granted", until=until, claim=claim)
    made = await site.store.exception_request(address, claim.check, claim.id, words, visitor)
    log.info(
        "exception requested for %s (%s failed, refusal %s): request #%s", address, claim.check, claim.id, made["id"]
    )
    if site.alerter is not None:
        site.alerter.send(
            {
                "version": 1,
                "event": "exception.requested",
                "id": made["id"],
                "ip": address,
                "check": claim.check,
                "refusal": claim.id,
                "message": words,
                "at": made["at"].isoformat(timespec="seconds"),
                "url": f"{site.web.public_url.rstrip('/')}/whitelist" if site.web.public_url else "/whitelist",
            }
        )
    return site.page(request, "exception.html", ip=address, state="pending", until=None, claim=claim)


@router.post("/exceptions/{request_id}/{verb}")
async def decide(request_id: int, verb: str, request: Request, user: WhitelistWriter, _csrf: CsrfDep) -> Response:
    if verb not in ("grant", "refuse"):
        raise Refused(404, "Grant or refuse.")
    site = site_of(request)
    decided = await site.store.exception_decide(request_id, verb == "grant", user.actor, site.exceptions.days)
    if decided is None:
        raise Refused(404, f"There is no waiting request #{request_id}.")
    log.info("%s %s exception request #%d for %s", user.actor, decided["state"], request_id, decided["ip"])
    return RedirectResponse("/whitelist", status_code=303)
