"""Where accepted mail goes: the next hop over SMTP, or a Maildir when there is none.

The gateway opens a next-hop transaction at the first recipient it accepts
itself, forwards MAIL FROM and each RCPT TO in the same session, and answers
the client with the next hop's own replies; at the end of DATA the client gets
250 only when the next hop said 250 (RFC 5321: nothing is accepted and lost).
A next hop that cannot be reached, drops the connection or stalls gives
``451 4.4.1``.  The Maildir writes each message to ``tmp/``, fsyncs it and
renames it into ``new/`` before answering 250.
"""

from __future__ import annotations

import abc
import asyncio
import itertools
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import aiosmtplib

from rdnsgate.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Answer:
    code: int
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


UNREACHABLE = Answer(451, "4.4.1 Next hop not reachable, try again later")
LOST = Answer(451, "4.4.1 Next hop connection lost, try again later")


class Transaction(abc.ABC):
    """One message's path to its destination: recipients first, then the content."""

    @abc.abstractmethod
    async def rcpt(self, recipient: str) -> Answer: ...

    @abc.abstractmethod
    async def data(self, message: bytes) -> Answer:
        """Hand the message over; the transaction is finished afterwards."""

    async def abort(self) -> None:
        """Forget the transaction (RSET, QUIT, a lost client)."""
        return None


class Destination(abc.ABC):
    @abc.abstractmethod
    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        """A transaction for `sender`, or the answer that refuses it."""

    @abc.abstractmethod
    def describe(self) -> str: ...

    async def close(self) -> None:
        """Let go of cached connections (at shutdown)."""
        return None


def _answer(code: int, message: str) -> Answer:
    text = " ".join(message.split())
    return Answer(code, text or "(no text)")


# -- SMTP next hop -------------------------------------------------------------------------------


class SmtpTransaction(Transaction):
    def __init__(self, client: aiosmtplib.SMTP, destination: SmtpDestination, encoding: str = "ascii") -> None:
        self.client = client
        self.destination = destination
        self.encoding = encoding  # utf-8 for an SMTPUTF8 transaction (RFC 6531)
        self.accepted = 0

    async def rcpt(self, recipient: str) -> Answer:
        try:
            response = await self.client.rcpt(recipient, encoding=self.encoding)
        except aiosmtplib.SMTPRecipientRefused as exc:
            return _answer(exc.code, exc.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            log.warning("next hop lost at RCPT: %s", exc)
            self._drop()
            return LOST
        except aiosmtplib.SMTPResponseException as exc:
            return _answer(exc.code, exc.message)
        self.accepted += 1
        return _answer(response.code, response.message)

    async def data(self, message: bytes) -> Answer:
        try:
            response = await self.client.data(message)
        except aiosmtplib.SMTPResponseException as exc:
            answer = _answer(exc.code, exc.message)
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError) as exc:
            log.warning("next hop lost at DATA: %s", exc)
            self._drop()
            return LOST
        else:
            answer = _answer(response.code, response.message)
            client, self.client = self.client, None  # type: ignore[assignment]
            self.destination.release(client)  # a finished transaction: the session is ready for the next
            return answer
        await self.abort()
        return answer

    def _drop(self) -> None:
        client, self.client = self.client, None  # type: ignore[assignment]
        if client is not None:
            client.close()

    async def abort(self) -> None:
        """RSET and keep the next-hop session for the next message, or close it on any trouble."""
        client, self.client = self.client, None  # type: ignore[assignment]
        if client is None:
            return
        try:
            if client.is_connected:
                await asyncio.wait_for(client.rset(), timeout=5)
                self.destination.release(client)
                return
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            pass
        client.close()


class SmtpDestination(Destination):
    """``smtp://HOST:PORT``, with a cache of idle next-hop sessions.

    A session whose transaction ended (250 after DATA, or RSET) waits for the
    next message, like Postfix's SMTP connection cache; an idle one is used at
    most `MAX_IDLE` seconds after it was last busy, and one that turns out to
    be gone is replaced, never counted as the next hop refusing.
    """

    MAX_IDLE = 20.0
    MAX_CACHED = 32

    def __init__(self, url: str, *, timeout: float, helo_name: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "smtp" or not parts.hostname:
            raise ConfigError(f"gateway.next_hop must look like smtp://HOST:PORT, not {url!r}")
        self.host = parts.hostname
        self.port = parts.port or 25
        self.timeout = timeout
        self.helo_name = helo_name
        self.idle: list[tuple[float, aiosmtplib.SMTP]] = []

    def release(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self.idle) < self.MAX_CACHED:
            self.idle.append((time.monotonic(), client))
        else:
            client.close()

    def _cached(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self.idle:
            since, client = self.idle.pop()
            if client.is_connected and now - since < self.MAX_IDLE:
                return client
            client.close()
        return None

    async def close(self) -> None:
        for _, client in self.idle:
            client.close()
        self.idle.clear()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        forwarded = [item for item in options if item.upper().startswith(("SIZE=", "BODY=")) or item == "SMTPUTF8"]
        encoding = "utf-8" if "SMTPUTF8" in forwarded else "ascii"
        reverse_path = "" if sender.strip() in ("", "<>") else sender
        cached = self._cached()
        if cached is not None:
            try:
                await cached.mail(reverse_path, options=forwarded, encoding=encoding)
            except aiosmtplib.SMTPSenderRefused as exc:
                self.release(cached)
                return _answer(exc.code, exc.message)
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                cached.close()  # the cached session went stale: open a fresh one
            else:
                return SmtpTransaction(cached, self, encoding)
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            timeout=self.timeout,
            local_hostname=self.helo_name,
            use_tls=False,
            start_tls=False,
        )
        try:
            await client.connect()
            await client.ehlo()
            await client.mail(reverse_path, options=forwarded, encoding=encoding)
        except aiosmtplib.SMTPSenderRefused as exc:
            client.close()
            return _answer(exc.code, exc.message)
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            return _answer(exc.code, exc.message) if exc.code >= 400 else UNREACHABLE
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            log.warning("next hop %s not reachable: %s", self.describe(), exc)
            client.close()
            return UNREACHABLE
        return SmtpTransaction(client, self, encoding)


# -- Maildir -------------------------------------------------------------------------------------

_counter = itertools.count()


class MaildirTransaction(Transaction):
    def __init__(self, destination: MaildirDestination) -> None:
        self.destination = destination
        self.recipients: list[str] = []

    async def rcpt(self, recipient: str) -> Answer:
        self.recipients.append(recipient)
        return Answer(250, "2.1.5 OK")

    async def data(self, message: bytes) -> Answer:
        try:
            name = await asyncio.to_thread(self.destination.deliver, message)
        except OSError as exc:
            log.error("Maildir delivery failed: %s", exc)
            return Answer(451, "4.3.0 Local delivery failed, try again later")
        return Answer(250, f"2.0.0 OK: queued as {name}")


class MaildirDestination(Destination):
    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def describe(self) -> str:
        return f"Maildir {self.path}"

    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        return MaildirTransaction(self)

    def deliver(self, message: bytes) -> str:
        """Write `message` durably: tmp/, fsync, rename into new/ (the Maildir protocol)."""
        name = f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}.{self.host}"
        temporary = self.path / "tmp" / name
        with open(temporary, "xb") as handle:
            handle.write(message.replace(b"\r\n", b"\n"))
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(temporary, self.path / "new" / name)
        directory = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return name


def destination_for(next_hop: str, maildir: str, *, timeout: float, helo_name: str) -> Destination:
    if next_hop:
        return SmtpDestination(next_hop, timeout=timeout, helo_name=helo_name)
    return MaildirDestination(Path(maildir))
