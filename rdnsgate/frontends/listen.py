"""Listeners of the line-protocol faces: the Postfix policy service (a protocol), Exim's socket (streams)."""

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
    handler: Handler, listen: Iterable[str], listeners: Listeners | None, what: str, limit: int = 2**16
) -> list[asyncio.base_events.Server]:
    """Listen on ``HOST:PORT`` / ``[IPv6]:PORT`` / ``unix:/path`` addresses (or the sockets bound for them),
    each connection handled by `handler` with a reader and a writer."""

    def streams() -> asyncio.Protocol:
        reader = asyncio.StreamReader(limit=limit)
        return asyncio.StreamReaderProtocol(reader, handler)

    return await listen_protocol(streams, listen, listeners, what)


async def listen_protocol(
    factory: Callable[[], asyncio.BaseProtocol], listen: Iterable[str], listeners: Listeners | None, what: str
) -> list[asyncio.base_events.Server]:
    """`listen_on` for a protocol `factory` (one protocol per connection)."""
    loop = asyncio.get_running_loop()
    servers = []
    for item in listen:
        bound = listeners.take(item) if listeners else None
        if bound:
            for sock in bound:
                if sock.family == socket.AF_UNIX:
                    servers.append(await loop.create_unix_server(factory, sock=sock))
                else:
                    servers.append(await loop.create_server(factory, sock=sock))
        elif item.startswith("unix:"):
            servers.append(await loop.create_unix_server(factory, path=item[len("unix:") :]))
        else:
            host, port = parse_listen(item)
            servers.append(await loop.create_server(factory, host=host, port=port, reuse_address=True))
        log.info("%s listening on %s", what, item)
    return servers
