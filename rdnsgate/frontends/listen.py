"""Stream listeners of the line-protocol faces (the Postfix policy service, Exim's socket)."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from rdnsgate.config import parse_listen

if TYPE_CHECKING:
    from rdnsgate.privileges import Listeners

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def listen_on(
    handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    listen: Iterable[str],
    listeners: Listeners | None,
    what: str,
    limit: int = 2**16,
) -> list[asyncio.base_events.Server]:
    """Listen on ``HOST:PORT`` / ``[IPv6]:PORT`` / ``unix:/path`` addresses (or the sockets bound for them)."""
    servers = []
    for item in listen:
        bound = listeners.take(item) if listeners else None
        if bound:
            for sock in bound:
                start = asyncio.start_unix_server if sock.family == socket.AF_UNIX else asyncio.start_server
                servers.append(await start(handler, sock=sock, limit=limit))
        elif item.startswith("unix:"):
            path = item[len("unix:") :]
            servers.append(await asyncio.start_unix_server(handler, path=path, limit=limit))
        else:
            host, port = parse_listen(item)
            servers.append(await asyncio.start_server(handler, host=host, port=port, reuse_address=True, limit=limit))
        log.info("%s listening on %s", what, item)
    return servers
