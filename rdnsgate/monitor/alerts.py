"""Telling people about a fleet state change: the webhook JSON body, the log line, the delivery.

`alert_body` is pure and is the documented webhook format (docs/monitor.md).
`Alerter.send` writes the log line at once and POSTs the body in the
background with retries, so a slow receiver never holds up the checks; a
receiver that keeps failing is logged, and the alert stays in the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from rdnsgate import __version__
from rdnsgate.model import FleetEntry
from rdnsgate.monitor.states import Alert

log = logging.getLogger("rdnsgate.monitor")

BODY_VERSION = 1
MAX_PENDING = 1000  # alerts waiting for their webhook POST; beyond that they are only logged


def alert_body(entry: FleetEntry, alert: Alert, public_url: str = "") -> dict[str, Any]:
    """The webhook's JSON body for `alert` about `entry` (already carrying its new state)."""
    return {
        "version": BODY_VERSION,
        "event": "fleet.state_changed",
        "ip": entry.ip,
        "label": entry.label,
        "helo": entry.helo,
        "before": alert.before.value,
        "after": alert.after.value,
        "at": _iso(alert.at),
        "detail": alert.detail,
        "chain": entry.last_chain,
        "last_good": entry.last_good,
        "url": f"{public_url.rstrip('/')}/servers/{quote(entry.ip, safe='')}" if public_url else None,
    }


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def alert_line(body: dict[str, Any]) -> str:
    if body.get("event") == "resolver":  # the resolver guard's alerts (runtime.py)
        return f"resolver on {body['node']}: {body['state']}: {body['detail']}"
    if body.get("event") == "exception.requested":  # a refused sender's request (frontends/web/exceptions.py)
        return f"exception requested for {body['ip']} ({body['check']} fails): request #{body['id']}"
    label = f" ({body['label']})" if body["label"] else ""
    return f"fleet {body['ip']}{label}: {body['before']} -> {body['after']}: {body['detail']}"


class Alerter:
    def __init__(
        self, webhook_url: str = "", *, timeout: float = 10.0, tries: int = 3, log_alerts: bool = True
    ) -> None:
        self.webhook_url = webhook_url
        self.timeout = timeout
        self.tries = tries
        self.log_alerts = log_alerts
        self.sent = 0
        self.failed = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def send(self, body: dict[str, Any]) -> None:
        if self.log_alerts:
            log.warning("%s", alert_line(body))
        if not self.webhook_url:
            return
        if len(self._tasks) >= MAX_PENDING:
            self.failed += 1
            log.error("webhook: %d alerts are waiting already; not posting %s", len(self._tasks), alert_line(body))
            return
        task = asyncio.get_running_loop().create_task(self._post(body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, body: dict[str, Any]) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=self.timeout, headers={"User-Agent": f"rdnsgate/{__version__}"}, follow_redirects=False
            )
        payload = json.dumps(body).encode()
        problem = ""
        for attempt in range(self.tries):
            try:
                response = await self._client.post(
                    self.webhook_url, content=payload, headers={"Content-Type": "application/json"}
                )
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self.sent += 1
                    return
                problem = f"HTTP {response.status_code}"
            if attempt + 1 < self.tries:
                await asyncio.sleep(min(30.0, 2.0**attempt))
        self.failed += 1
        log.error("webhook %s failed %d times (%s): %s", self.webhook_url, self.tries, problem, alert_line(body))

    async def close(self, timeout: float = 5.0) -> None:
        """Give pending POSTs `timeout` seconds, then stop them."""
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for task in pending:
                task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
