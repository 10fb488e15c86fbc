"""PostgreSQL LISTEN: be told at once when another node changes the store.

`listen` keeps one connection of its own (not one of the pool: a pooled
connection is handed to other work between statements) and calls
`on_change` for every notification on `channel`, and once after each
(re)connection, since changes made while it was away were not heard.  When
the connection is lost it connects again, waiting up to `RETRY_MAX` seconds
between tries; a connection that stays silent is probed every
`PROBE_SECONDS`.  It runs until cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

from rdnsgate.storage.base import CONNECT_SECONDS, shown_url

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_MAX = 10.0
PROBE_SECONDS = 10.0


def asyncpg_dsn(url: str) -> str:
    """`url` (postgresql:// or postgresql+asyncpg://) as a DSN asyncpg connects to."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(url: str, channel: str, on_change: Callable[[], None]) -> None:
    delay = RETRY_FIRST
    lost_said = False
    while True:
        connection: Any = None
        try:
            connection = await asyncpg.connect(asyncpg_dsn(url), timeout=CONNECT_SECONDS)
            closed = asyncio.Event()
            connection.add_termination_listener(lambda _connection, closed=closed: closed.set())
            await connection.add_listener(channel, lambda *_args: on_change())
            if lost_said:
                log.warning("listening on %s again", shown_url(url))
            delay, lost_said = RETRY_FIRST, False
            on_change()  # anything changed while we were not listening
            while not closed.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(closed.wait(), PROBE_SECONDS)
                if not closed.is_set():
                    await connection.fetchval("SELECT 1", timeout=CONNECT_SECONDS)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if not lost_said:
                log.warning("not listening for changes on %s (%s); retrying", shown_url(url), type(exc).__name__)
                lost_said = True
        finally:
            if connection is not None and not connection.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.close(), 2)
        if not lost_said:
            log.warning("lost the listening connection to %s; reconnecting", shown_url(url))
            lost_said = True
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX)
