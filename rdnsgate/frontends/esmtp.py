"""Pure ESMTP details of the gateway: the EHLO reply, enhanced status codes, DATA lines, parameters.

- `ehlo_keywords`: what the gateway offers its clients is what the next hop
  (or the Maildir) can honour, never more: SIZE (the smaller limit),
  8BITMIME, SMTPUTF8 and DSN only when the destination has them; PIPELINING
  (RFC 2920) and ENHANCEDSTATUSCODES (RFC 2034) are the gateway's own.
- `with_enhanced_code`: RFC 2034 wants an enhanced status code in every reply
  but the greeting, HELO/EHLO and 354; replies made by the SMTP library get one
  from their basic code here.
- `content_line`: one DATA line as received -> message content: the leading dot
  of transparency removed (RFC 5321 §4.5.2) and bare CR or LF turned into CRLF
  (`gateway.bare_line_ends = "normalise"`), so that nothing inside a message can
  end it early at the next hop (SMTP smuggling).  End of data is only
  ``<CRLF>.<CRLF>``.
- `passed_on`: the ESMTP parameters to give the next hop, as the client wrote
  them (their case kept: ENVID and ORCPT are case-sensitive).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

DSN_MAIL = frozenset({"RET", "ENVID"})  # RFC 3461 MAIL parameters
DSN_RCPT = frozenset({"NOTIFY", "ORCPT"})  # RFC 3461 RCPT parameters
PASSED_MAIL = frozenset({"SIZE", "BODY", "SMTPUTF8"}) | DSN_MAIL

_BARE = re.compile(rb"\r\n|\r|\n")
_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?:\s|\Z)")
_DEFAULT_ENHANCED = {
    "2": "2.0.0",
    "4": "4.0.0",
    "5": "5.5.0",
    "421": "4.3.2",
    "450": "4.2.0",
    "451": "4.3.0",
    "452": "4.3.1",
    "500": "5.5.2",
    "501": "5.5.4",
    "502": "5.5.1",
    "503": "5.5.1",
    "504": "5.5.4",
    "530": "5.7.0",
    "550": "5.7.1",
    "552": "5.3.4",
    "553": "5.1.3",
    "554": "5.5.0",
    "555": "5.5.4",
}


def ehlo_keywords(
    own_size: int, hop_size: int | None, eightbit: bool, smtputf8: bool, dsn: bool
) -> tuple[list[str], int]:
    """The EHLO keywords to offer (before STARTTLS/AUTH/XCLIENT) and the size limit that applies."""
    size = min(own_size, hop_size) if hop_size else own_size
    keywords = ["PIPELINING", f"SIZE {size}"]
    if eightbit:
        keywords.append("8BITMIME")
    if smtputf8:
        keywords.append("SMTPUTF8")
    if dsn:
        keywords.append("DSN")
    keywords.append("ENHANCEDSTATUSCODES")
    return keywords, size


def with_enhanced_code(status: str) -> str:
    """`status` with an RFC 3463 code after the basic one, when it has none; 3xx and malformed lines as they are."""
    if len(status) < 4 or not status[:3].isdigit() or status[3] not in " -" or status[0] == "3":
        return status
    text = status[4:]
    if _ENHANCED.match(text):
        return status
    enhanced = _DEFAULT_ENHANCED.get(status[:3]) or _DEFAULT_ENHANCED.get(status[0], "")
    return f"{status[:4]}{enhanced} {text}" if enhanced else status


def content_line(raw: bytes) -> tuple[bytes, bool]:
    """A DATA line as received (ending in CRLF) -> (its content, whether it held a bare CR or LF).

    The content has every line ending as CRLF; a line of the message that
    begins with a dot stays one (the relay dot-stuffs again for the next hop).
    """
    line = raw[1:] if raw.startswith(b".") else raw
    body = line[:-2]
    if b"\r" not in body and b"\n" not in body:
        return line, False
    return _BARE.sub(b"\r\n", body) + b"\r\n", True


def keyword(parameter: str) -> str:
    return parameter.partition("=")[0].upper()


def passed_on(parameters: Iterable[str], allowed: frozenset[str]) -> list[str]:
    """The parameters whose keyword is in `allowed`, unchanged."""
    return [item for item in parameters if keyword(item) in allowed]
