"""Header and reply text that carries client-controlled strings, made safe.

HELO arguments and PTR data come from the client or its DNS: before they go
into a header, a reply or a log line they are reduced to printable ASCII and
capped, so nothing can start a new line or a new header.
"""

from __future__ import annotations

from rdnsgate.model import IprevReport

MAX_ITEM = 200


def printable(text: str, limit: int = MAX_ITEM) -> str:
    """`text` with everything but printable ASCII replaced by '?', cut to `limit`."""
    # The usual case is answered in C: among ASCII characters, the printable ones are exactly ' '..'~'.
    ascii_printable = text.isascii() and text.isprintable()
    clean = text if ascii_printable else "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= limit else clean[: limit - 3] + "..."


def _comment(text: str) -> str:
    """An RFC 5322 comment body: no parentheses or backslashes left unescaped."""
    return printable(text, 120).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def authentication_results(authserv_id: str, iprev: IprevReport) -> str:
    """``Authentication-Results`` value (RFC 8601 §2.7.3) for the iprev check."""
    name = iprev.shown_name
    comment = f" ({_comment(name)})" if name else ""
    return f"{printable(authserv_id, 100)}; iprev={iprev.result.result.value} policy.iprev={iprev.ip}{comment}"
