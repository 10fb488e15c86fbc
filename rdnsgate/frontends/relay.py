"""Where accepted mail goes: the next hop over SMTP, or a Maildir when there is none.

The gateway opens a next-hop transaction at the first recipient it accepts
itself, forwards MAIL FROM and each RCPT TO in the same session (their ESMTP
parameters as the client gave them), and answers the client with the next
hop's own replies.  DATA is streamed: the next hop gets each block of lines as
it arrives, so a message is never held whole in memory; at the end the client
gets 250 only when the next hop said 250 (RFC 5321: nothing is accepted and
lost).  A transaction given up half-way (the client left, the message was too
big) closes the next-hop connection without the final dot, so the next hop
discards what it got.  A next hop that cannot be reached, drops the
connection or stalls gives ``451 4.4.1``.  The Maildir streams each message
into ``tmp/``, fsyncs it and renames it into ``new/`` before answering 250.

The SMTP client here is small on purpose: aiosmtplib (used before) takes a
message only whole and copies it several times while sending, which made a
20 MB message cost ~80 MB; this one writes the blocks it is given, dot-stuffed,
with the transport's flow control (BENCHMARKS.md has the memory figures).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import itertools
import logging
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from rdnsgate.errors import ConfigError

log = logging.getLogger(__name__)

MAX_REPLY = 64 * 1024  # bytes of one next-hop reply, at most
_DOT_AT_LINE_START = re.compile(rb"(?m)^\.")
_BAD_IN_COMMAND = re.compile(r"[\x00-\x1f\x7f]")


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


@dataclass(frozen=True, slots=True)
class Offer:
    """The ESMTP extensions a destination can honour, so the gateway promises its clients no more."""

    size: int | None = None  # the next hop's SIZE limit (None: it named none)
    eightbit: bool = True
    smtputf8: bool = True
    dsn: bool = False
    names: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_ehlo(cls, lines: list[str]) -> Offer:
        """From the next hop's EHLO reply (its lines after the first, without the code)."""
        names: dict[str, str] = {}
        for line in lines:
            keyword, _, value = line.strip().partition(" ")
            names[keyword.upper()] = value.strip()
        size_text = names.get("SIZE", "")
        size = int(size_text) if size_text.isdigit() and int(size_text) > 0 else None
        return cls(
            size=size,
            eightbit="8BITMIME" in names,
            smtputf8="SMTPUTF8" in names,
            dsn="DSN" in names,
            names=frozenset(names),
        )


class Transaction(abc.ABC):
    """One message's path to its destination: recipients, then the content in blocks of whole lines."""

    @abc.abstractmethod
    async def rcpt(self, recipient: str, options: list[str] | None = None) -> Answer: ...

    @abc.abstractmethod
    async def open_data(self) -> Answer | None:
        """Start the content; None when the destination is ready for it, else its refusal."""

    @abc.abstractmethod
    async def write(self, block: bytes) -> None:
        """Pass on whole lines of content (CRLF line ends, not dot-stuffed); raises OSError when lost."""

    @abc.abstractmethod
    async def end(self) -> Answer:
        """The content is complete: the destination's answer; the transaction is finished afterwards."""

    async def abort(self) -> None:
        """Forget the transaction (RSET, QUIT, a lost client, a message given up half-way)."""
        return None


class Destination(abc.ABC):
    @abc.abstractmethod
    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        """A transaction for `sender`, or the answer that refuses it."""

    @abc.abstractmethod
    def describe(self) -> str: ...

    def offer(self) -> Offer:
        """What this destination can honour (known after `probe`)."""
        return Offer()

    async def probe(self) -> None:
        """Learn what the destination offers (at start); never raises."""
        return None

    async def close(self) -> None:
        """Let go of cached connections (at shutdown)."""
        return None


def _answer(code: int, message: str) -> Answer:
    text = " ".join(message.split())
    return Answer(code, text or "(no text)")


# -- SMTP next hop -------------------------------------------------------------------------------


class NextHopError(Exception):
    """The next hop could not be reached, went away, stalled, or broke the protocol."""


class SmtpConnection:
    """One plain SMTP connection to the next hop: commands, replies, and a streamed body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.timeout = timeout
        self.offer = Offer()
        self.last_used = time.monotonic()

    @classmethod
    async def open(cls, host: str, port: int, helo_name: str, timeout: float) -> SmtpConnection:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise NextHopError(f"cannot connect: {exc or type(exc).__name__}") from None
        connection = cls(reader, writer, timeout)
        try:
            banner, _ = await connection.reply()
            if banner.code != 220:
                raise NextHopError(f"banner {banner}")
            answer, lines = await connection.command(f"EHLO {helo_name}")
            if answer.code != 250:
                answer, lines = await connection.command(f"HELO {helo_name}")
                if answer.code != 250:
                    raise NextHopError(f"HELO refused: {answer}")
                lines = []
            connection.offer = Offer.from_ehlo(lines)
        except BaseException:
            connection.close()
            raise
        return connection

    @property
    def is_open(self) -> bool:
        return not self.writer.is_closing()

    async def reply(self) -> tuple[Answer, list[str]]:
        """One reply, possibly of several lines: its answer (code, text of the last line) and the other lines."""
        lines: list[str] = []
        size = 0
        while True:
            try:
                async with asyncio.timeout(self.timeout):  # not wait_for: that makes a task for every line
                    raw = await self.reader.readuntil(b"\n")
            except TimeoutError:
                raise NextHopError(f"no reply within {self.timeout:g} s") from None
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError) as exc:
                raise NextHopError(f"connection lost ({type(exc).__name__})") from None
            size += len(raw)
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if size > MAX_REPLY or len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
                raise NextHopError(f"not an SMTP reply: {line[:80]!r}")
            if line[3:4] == "-":
                lines.append(line[4:])
                continue
            return _answer(int(line[:3]), line[4:]), lines

    async def command(self, text: str) -> tuple[Answer, list[str]]:
        if _BAD_IN_COMMAND.search(text):
            raise ValueError("a control character in an SMTP command")
        self.writer.write(text.encode("utf-8") + b"\r\n")
        self.last_used = time.monotonic()
        return await self.reply()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        try:
            async with asyncio.timeout(self.timeout):
                await self.writer.drain()
        except TimeoutError:
            raise NextHopError(f"could not send within {self.timeout:g} s") from None
        except OSError as exc:
            raise NextHopError(f"connection lost ({type(exc).__name__})") from None

    def close(self) -> None:
        if not self.writer.is_closing():
            self.writer.close()


def _mail_command(reverse_path: str, options: list[str]) -> str:
    return " ".join([f"MAIL FROM:<{reverse_path}>", *options])


class SmtpTransaction(Transaction):
    def __init__(self, connection: SmtpConnection, destination: SmtpDestination) -> None:
        self.connection: SmtpConnection | None = connection
        self.destination = destination
        self.in_data = False

    def _drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            connection.close()

    async def rcpt(self, recipient: str, options: list[str] | None = None) -> Answer:
        if self.connection is None:
            return LOST
        try:
            answer, _ = await self.connection.command(" ".join([f"RCPT TO:<{recipient}>", *(options or ())]))
        except NextHopError as exc:
            log.warning("next hop lost at RCPT: %s", exc)
            self._drop()
            return LOST
        return answer

    async def open_data(self) -> Answer | None:
        if self.connection is None:
            return LOST
        try:
            answer, _ = await self.connection.command("DATA")
        except NextHopError as exc:
            log.warning("next hop lost at DATA: %s", exc)
            self._drop()
            return LOST
        if answer.code != 354:
            await self.abort()
            return answer
        self.in_data = True
        return None

    async def write(self, block: bytes) -> None:
        if self.connection is None:
            raise OSError("the next hop connection is gone")
        try:
            await self.connection.send(_DOT_AT_LINE_START.sub(b"..", block))
        except NextHopError as exc:
            log.warning("next hop lost during DATA: %s", exc)
            self._drop()
            raise OSError(str(exc)) from None

    async def end(self) -> Answer:
        connection = self.connection
        if connection is None or not self.in_data:
            return LOST
        try:
            await connection.send(b".\r\n")
            answer, _ = await connection.reply()
        except NextHopError as exc:
            log.warning("next hop lost at the end of DATA: %s", exc)
            self._drop()
            return LOST
        self.in_data = False
        self.connection = None
        self.destination.release(connection)  # a finished transaction: the session is ready for the next
        return answer

    async def abort(self) -> None:
        """RSET and keep the next-hop session for the next message; in the middle of DATA, or on trouble, close it."""
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.in_data:  # no final dot: the next hop throws away what it got
            connection.close()
            return
        try:
            answer, _ = await asyncio.wait_for(connection.command("RSET"), 5)
        except (NextHopError, TimeoutError, OSError):
            connection.close()
            return
        if answer.code == 250:
            self.destination.release(connection)
        else:
            connection.close()


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
        self.idle: list[SmtpConnection] = []
        self._offer: Offer | None = None

    def offer(self) -> Offer:
        return self._offer or Offer()

    async def probe(self) -> None:
        try:
            connection = await SmtpConnection.open(self.host, self.port, self.helo_name, self.timeout)
        except NextHopError as exc:
            log.warning("next hop %s not reachable at start (%s); offering clients the basics", self.describe(), exc)
            return
        self._learn(connection.offer)
        self.release(connection)

    def _learn(self, offer: Offer) -> None:
        if offer != self._offer:
            if self._offer is not None:
                log.info("next hop %s now offers %s", self.describe(), " ".join(sorted(offer.names)) or "nothing")
            self._offer = offer

    def release(self, connection: SmtpConnection) -> None:
        if connection.is_open and len(self.idle) < self.MAX_CACHED:
            connection.last_used = time.monotonic()
            self.idle.append(connection)
        else:
            connection.close()

    def _cached(self) -> SmtpConnection | None:
        now = time.monotonic()
        while self.idle:
            connection = self.idle.pop()
            if connection.is_open and now - connection.last_used < self.MAX_IDLE:
                return connection
            connection.close()
        return None

    async def close(self) -> None:
        for connection in self.idle:
            with contextlib.suppress(Exception):
                connection.writer.write(b"QUIT\r\n")
            connection.close()
        self.idle.clear()

    def describe(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"smtp://{host}:{self.port}"

    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        reverse_path = "" if sender.strip() in ("", "<>") else sender
        command = _mail_command(reverse_path, options)
        cached = self._cached()
        if cached is not None:
            try:
                answer, _ = await cached.command(command)
            except NextHopError:
                cached.close()  # the cached session went stale: open a fresh one
            else:
                if answer.ok:
                    return SmtpTransaction(cached, self)
                self.release(cached)
                return answer
        try:
            connection = await SmtpConnection.open(self.host, self.port, self.helo_name, self.timeout)
            self._learn(connection.offer)
            answer, _ = await connection.command(command)
        except NextHopError as exc:
            log.warning("next hop %s not reachable: %s", self.describe(), exc)
            return UNREACHABLE
        if not answer.ok:
            self.release(connection)
            return answer
        return SmtpTransaction(connection, self)


# -- Maildir -------------------------------------------------------------------------------------

_counter = itertools.count()


class MaildirTransaction(Transaction):
    def __init__(self, destination: MaildirDestination) -> None:
        self.destination = destination
        self.recipients: list[str] = []
        self.name = ""
        self.handle: BinaryIO | None = None

    async def rcpt(self, recipient: str, options: list[str] | None = None) -> Answer:
        self.recipients.append(recipient)
        return Answer(250, "2.1.5 OK")

    async def open_data(self) -> Answer | None:
        self.name = f"{time.time_ns()}.P{os.getpid()}Q{next(_counter)}.{self.destination.host}"
        try:
            self.handle = open(self.destination.path / "tmp" / self.name, "xb")  # noqa: SIM115 - closed in end/abort
        except OSError as exc:
            log.error("Maildir delivery failed: %s", exc)
            return Answer(451, "4.3.0 Local delivery failed, try again later")
        return None

    async def write(self, block: bytes) -> None:
        assert self.handle is not None
        await asyncio.to_thread(self.handle.write, block.replace(b"\r\n", b"\n"))

    async def end(self) -> Answer:
        handle, self.handle = self.handle, None
        assert handle is not None
        try:
            await asyncio.to_thread(self.destination.deliver, handle, self.name)
        except OSError as exc:
            log.error("Maildir delivery failed: %s", exc)
            self._remove()
            return Answer(451, "4.3.0 Local delivery failed, try again later")
        return Answer(250, f"2.0.0 OK: queued as {self.name}")

    def _remove(self) -> None:
        with contextlib.suppress(OSError):
            (self.destination.path / "tmp" / self.name).unlink()

    async def abort(self) -> None:
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()
            self._remove()


class MaildirDestination(Destination):
    def __init__(self, path: Path) -> None:
        self.path = path
        for sub in ("tmp", "new", "cur"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        self.host = socket.gethostname().replace("/", "_").replace(":", "_")

    def describe(self) -> str:
        return f"Maildir {self.path}"

    def offer(self) -> Offer:
        return Offer(dsn=False)  # a Maildir cannot send delivery notifications

    async def begin(self, sender: str, options: list[str]) -> Transaction | Answer:
        return MaildirTransaction(self)

    def deliver(self, handle: BinaryIO, name: str) -> None:
        """Make the message in tmp/ durable and move it into new/ (the Maildir protocol)."""
        try:
            handle.flush()
            os.fsync(handle.fileno())
        finally:
            handle.close()
        os.rename(self.path / "tmp" / name, self.path / "new" / name)
        directory = os.open(self.path / "new", os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def destination_for(next_hop: str, maildir: str, *, timeout: float, helo_name: str) -> Destination:
    if next_hop:
        return SmtpDestination(next_hop, timeout=timeout, helo_name=helo_name)
    return MaildirDestination(Path(maildir))
