"""The Exim face: one request line from an ACL's ``${readsocket}``, one answer line.

Exim cannot speak Postfix's policy protocol, but an ACL can send a line to a
socket and read a line back (``${readsocket{inet:HOST:PORT}{REQUEST\\n}...}``).
The request is ``name=value`` pairs separated by spaces, each value bare or
in double quotes with backslash escapes, exactly as Exim's ``${quote:...}``
writes it (so a quoted local part with spaces, or an empty sender, travels
intact).  Names: ``ip`` (required), ``port`` (the client's source port: with
``ip`` it names the SMTP session, so a message's many RCPTs cost one
evaluation), ``helo``, ``sender`` (empty for a bounce), ``rcpt`` and
``stage`` (``connect``, ``helo``, ``mail``, ``rcpt`` (default), ``data``).
Unknown names are ignored.

The answer is one line, for the ACL to match on its first word:

- ``accept``: nothing to refuse here;
- ``header NAME: VALUE``: accept, and add this header (profile ``monitor``);
- ``deny CODE X.Y.Z TEXT``: refuse permanently (Exim's ``deny`` with that message);
- ``drop CODE X.Y.Z TEXT``: refuse and close the connection (profile ``classic``);
- ``defer CODE X.Y.Z TEXT``: refuse temporarily (a DNS failure, never a 5xx).

A request it cannot read gets ``defer 451 4.3.5 ...`` with the reason (and a
warning in the log): a broken ACL must not let mail through unchecked, nor
refuse it for good.  Decisions are the policy service's (`PolicyService`):
the same profile, overrides, whitelist and decision log.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Protocol

from rdnsgate.frontends.listen import listen_on
from rdnsgate.policy.decide import Decision
from rdnsgate.policy.profiles import Action

if TYPE_CHECKING:
    from rdnsgate.privileges import Listeners

log = logging.getLogger(__name__)

MAX_REQUEST = 4096
STATES = {"connect": "CONNECT", "helo": "HELO", "ehlo": "HELO", "mail": "MAIL", "rcpt": "RCPT", "data": "DATA"}
_PAIR = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)=(?:"((?:[^"\\]|\\.)*)"|([^\s"]*))(?=\s|\Z)')
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def parse_request(line: str) -> dict[str, str]:
    """``name=value name="quoted value"`` -> {name: value}; ValueError names what is wrong. Pure."""
    found: dict[str, str] = {}
    position, text = 0, line.rstrip("\r\n")
    while position < len(text):
        if text[position:].isspace():
            break
        match = _PAIR.match(text, position)
        if match is None:
            raise ValueError(f'cannot read {text[position:][:40].strip()!r} (want name=value or name="value")')
        name, quoted, bare = match.groups()
        if quoted is not None:
            value = re.sub(r"\\(.)", lambda escape: _ESCAPES.get(escape[1], escape[1]), quoted)
        else:
            value = bare
        found[name.lower()] = value
        position = match.end()
    return found


def quote(value: str) -> str:
    """As Exim's ``${quote:}``: bare when only letters, digits, ``_.-``, else in quotes with escapes. Pure."""
    if value and re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def policy_request(fields: dict[str, str]) -> dict[str, str]:
    """The Exim request as the policy service's attributes; ValueError when it cannot be one. Pure."""
    ip = fields.get("ip", "")
    if not ip:
        raise ValueError("no ip= (the ACL should send ip=${quote:$sender_host_address})")
    stage = fields.get("stage", "rcpt").lower()
    if stage not in STATES:
        raise ValueError(f"stage={stage[:20]!r}: want one of {', '.join(STATES)}")
    request = {
        "instance": f"exim:{ip}:{fields.get('port', '')}",
        "client_address": ip,
        "protocol_state": STATES[stage],
    }
    if "helo" in fields:
        request["helo_name"] = fields["helo"]
    if "sender" in fields:
        request["sender"] = fields["sender"]
    if "rcpt" in fields:
        request["recipient"] = fields["rcpt"]
    return request


class Judge(Protocol):
    """The policy service (policy_server.PolicyService): a request's decision, refusal due, header."""

    async def judge(self, request: dict[str, str]) -> tuple[Decision | None, bool, tuple[str, str] | None]: ...


class EximService:
    """Answers Exim's one-line requests with the policy service's decisions."""

    def __init__(self, policy: Judge) -> None:
        self.policy = policy

    async def answer_line(self, line: str) -> str:
        """The answer to one request line (without its newline)."""
        try:
            request = policy_request(parse_request(line))
            decision, refuse, header = await self.policy.judge(request)
        except ValueError as exc:  # policy_server.ProtocolError is one too
            log.warning("exim request %r: %s", line[:120], exc)
            return f"defer 451 4.3.5 rdnsgate cannot read the request: {exc}"
        if refuse and decision is not None and decision.reply is not None:
            reply = decision.reply
            verb = "defer" if decision.action is Action.TEMPFAIL else "drop" if decision.close else "deny"
            return f"{verb} {reply}"
        if header is not None:
            return f"header {header[0]}: {header[1]}"
        return "accept"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection, as ``${readsocket}`` makes them: read a line, answer, close."""
        peer = writer.get_extra_info("peername") or "unix socket"
        try:
            try:
                data = await asyncio.wait_for(reader.readuntil(b"\n"), 30)
            except asyncio.IncompleteReadError as exc:  # Exim shuts its side down after the request
                data = exc.partial
            except asyncio.LimitOverrunError:
                log.warning("exim client %s: request longer than %d bytes", peer, MAX_REQUEST)
                writer.write(f"defer 451 4.3.5 rdnsgate: request longer than {MAX_REQUEST} bytes\n".encode())
                return
            if not data.strip():
                return
            try:
                line = data.decode("utf-8")
            except UnicodeDecodeError:
                line = data.decode("utf-8", "replace")
            answer = await self.answer_line(line)
            writer.write(answer.encode("utf-8", "replace") + b"\n")
            await writer.drain()
        except (ConnectionError, TimeoutError):
            return
        except Exception:
            log.exception("exim client %s: internal error", peer)
            writer.write(b"defer 451 4.3.0 rdnsgate: internal error\n")
        finally:
            writer.close()


async def serve_exim(
    service: EximService, listen: Iterable[str], listeners: Listeners | None = None
) -> list[asyncio.base_events.Server]:
    return await listen_on(service.handle, listen, listeners, "exim socket", limit=MAX_REQUEST)
