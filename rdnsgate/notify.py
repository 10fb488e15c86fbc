"""systemd's notify protocol (sd_notify(3)): READY, STATUS, STOPPING, RELOADING, WATCHDOG.

A service started with ``Type=notify`` finds the datagram socket to write to
in ``$NOTIFY_SOCKET`` (a path, or an abstract socket when it starts with
``@``); each message is ``KEY=VALUE`` lines.  With ``WatchdogSec=`` systemd
sets ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``): the service must send
``WATCHDOG=1`` more often than that, or it is taken for hung and restarted.
Without ``$NOTIFY_SOCKET`` every call does nothing, so running by hand or
under another supervisor costs nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = env.get("NOTIFY_SOCKET", "")
        if self.address.startswith("@"):
            self.address = "\0" + self.address[1:]
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        mine = not pid or pid == str(os.getpid())
        self.watchdog_seconds = int(usec) / 1_000_000 if usec.isdigit() and int(usec) > 0 and mine else None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, **fields: str) -> bool:
        """Send one message (fields as ``KEY=VALUE`` lines); False when there is nobody to tell or it failed."""
        if not self.address:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self.address)
        except OSError as exc:
            log.warning("cannot tell systemd %s: %s", ", ".join(fields), exc)
            return False
        return True

    def ready(self, status: str) -> None:
        self.send(READY="1", STATUS=status, MAINPID=str(os.getpid()))

    def status(self, status: str) -> None:
        self.send(STATUS=status)

    def stopping(self, status: str = "draining sessions") -> None:
        self.send(STOPPING="1", STATUS=status)

    def start_watchdog(self) -> None:
        """Send WATCHDOG=1 every half of $WATCHDOG_USEC from the event loop: a hung loop stops it."""
        if self.watchdog_seconds is None or not self.address or self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._watchdog(self.watchdog_seconds / 2), name="watchdog")

    async def _watchdog(self, every: float) -> None:
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(every)

    async def stop_watchdog(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
