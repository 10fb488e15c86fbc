"""`rdnsgate config check`: what the settings point at, tried before they go live.

Each probe returns findings, one line each: ``ok``, ``warning`` (works, but
look) or ``error`` (a service would fail or misbehave).  They touch only what
the settings name: the TLS certificate and key, the next hop (banner and
EHLO, then QUIT), each nameserver (one question), each canary of the resolver
guard (one question), the store (opened, schema version read; nothing written).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from rdnsgate.config import DnsSettings, Settings

PROBE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # ok | warning | error
    what: str

    def __str__(self) -> str:
        return f"{self.level}: {self.what}"


async def probe_all(settings: Settings) -> list[Finding]:
    findings = [tls(settings)]
    findings += await asyncio.gather(next_hop(settings), store(settings))
    findings += await nameservers(settings.dns)
    findings += await canaries(settings)
    return [item for item in findings if item is not None]


def tls(settings: Settings) -> Finding | None:
    cert, key = settings.gateway.tls_cert, settings.gateway.tls_key
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:  # before OSError, of which it is a kind
        return Finding("error", f"gateway.tls_cert/tls_key: {cert} and {key} do not make a pair: {exc.reason}")
    except OSError as exc:
        return Finding("error", f"gateway.tls_cert/tls_key: cannot read {exc.filename or cert}: {exc.strerror}")
    return Finding("ok", f"gateway.tls_cert/tls_key: the key matches the certificate ({cert})")


async def next_hop(settings: Settings) -> Finding | None:
    url = settings.gateway.next_hop
    if not url:
        return Finding("ok", f"gateway.next_hop: none; accepted mail goes to the Maildir {settings.gateway.maildir}")
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 25
    writer = None
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), PROBE_SECONDS)
        banner = await asyncio.wait_for(_reply(reader), PROBE_SECONDS)
        if not banner.startswith("220"):
            return Finding("error", f"gateway.next_hop {url}: banner {banner!r}, not 220")
        writer.write(f"EHLO {settings.gateway.hostname or 'rdnsgate.invalid'}\r\n".encode())
        answer = await asyncio.wait_for(_reply(reader), PROBE_SECONDS)
        writer.write(b"QUIT\r\n")
        if not answer.startswith("250"):
            return Finding("error", f"gateway.next_hop {url}: EHLO answered {answer.splitlines()[0]!r}")
        return Finding("ok", f"gateway.next_hop {url}: answers EHLO ({banner.splitlines()[0][4:60]})")
    except (OSError, TimeoutError) as exc:
        why = "no answer in time" if isinstance(exc, TimeoutError) else exc.strerror or type(exc).__name__
        return Finding("error", f"gateway.next_hop {url}: {why}")
    finally:
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _reply(reader: asyncio.StreamReader) -> str:
    """One SMTP reply, all its lines."""
    lines = []
    while True:
        line = (await reader.readline()).decode("ascii", "replace").rstrip("\r\n")
        if not line:
            raise OSError(0, "connection closed")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


async def nameservers(dns: DnsSettings) -> list[Finding]:
    from rdnsgate.errors import RdnsgateError
    from rdnsgate.lookups import build_resolver
    from rdnsgate.lookups.nameservers import resolve_nameservers

    try:
        servers = resolve_nameservers(dns.nameservers)
    except RdnsgateError as exc:
        return [Finding("error", f"dns.nameservers: {exc}")]
    if not servers:
        return [Finding("error", "dns.nameservers: none given and none in the system's resolv.conf")]

    async def ask(server: object) -> Finding:
        text = str(server)
        one = DnsSettings(nameservers=(text,), timeout=min(dns.timeout, 2.0), tries=2, cache_size=0)
        resolver = build_resolver(one)
        try:
            found = await resolver.lookup(".", "NS")
        finally:
            await resolver.close()
        if found.status.value == "timeout":
            return Finding("error", f"dns.nameservers {text}: does not answer")
        return Finding("ok", f"dns.nameservers {text}: answers ({found.status.value} for '. NS')")

    return list(await asyncio.gather(*(ask(server) for server in servers)))


async def canaries(settings: Settings) -> list[Finding]:
    """Each canary of the resolver guard, asked once: one that fails now would hold back every 5xx."""
    import socket

    from rdnsgate.lookups import build_resolver
    from rdnsgate.lookups.canary import MISSING, canaries_of, canary_problem

    names = canaries_of(settings.dns, settings.gateway.hostname or socket.getfqdn())
    if not names:
        return [Finding("warning", "dns.canaries: none; a resolver that says nothing exists would refuse all mail")]
    try:
        resolver = build_resolver(settings.dns)
    except Exception as exc:  # the nameservers' own finding says why
        return [Finding("error", f"dns.canaries: no resolver ({exc})")]
    try:
        found = {name: await canary_problem(resolver, name, PROBE_SECONDS) for name in names}
    finally:
        await resolver.close()
    out = []
    for name, problem in found.items():
        if problem is None:
            out.append(Finding("ok", f"dns.canaries {name}: answers"))
        elif problem == MISSING and any(other is None for other in found.values()):
            out.append(Finding("warning", f"dns.canaries {name}: {problem}; the services will not use it"))
        else:
            out.append(Finding("error", f"dns.canaries {name}: {problem}; no 5xx would be given while it fails"))
    return out


async def store(settings: Settings) -> Finding:
    from rdnsgate.errors import RdnsgateError
    from rdnsgate.storage import open_store
    from rdnsgate.storage.base import newest_revision, shown_url

    shown = shown_url(settings.storage.url)
    try:
        opened = await open_store(settings.storage, migrate=False)
        try:
            version = await opened.schema_version()
        finally:
            await opened.close()
    except RdnsgateError as exc:
        return Finding("error", f"storage.url: {exc}")
    except Exception as exc:
        return Finding("error", f"storage.url {shown}: {type(exc).__name__}: {exc}")
    newest = newest_revision()
    if version == newest:
        return Finding("ok", f"storage.url {shown}: opens, schema {version} (the newest)")
    return Finding(
        "warning",
        f"storage.url {shown}: schema {version or 'empty'}, the newest is {newest}: "
        "services migrate it when they start, or run `rdnsgate db upgrade`",
    )
