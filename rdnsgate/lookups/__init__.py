"""The only code that talks DNS: wire codec, transport, cache, resolver, gathering."""

from __future__ import annotations

from typing import Any

from rdnsgate.config import DnsSettings
from rdnsgate.lookups.bulk import BulkClient, BulkResolver
from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.nameservers import resolve_nameservers
from rdnsgate.lookups.transport import DnsClient


def _asking(settings: DnsSettings) -> dict[str, Any]:
    """How either client asks, from the settings: one try's timeout, the tries, questions on the wire at once."""
    return {"timeout": settings.timeout, "tries": settings.tries, "max_inflight": settings.max_inflight}


def build_bulk_resolver(settings: DnsSettings) -> BulkResolver:
    """The callback resolver of bulk work (the audit) for `settings`: the same nameservers, timeouts and bounds."""
    client = BulkClient(resolve_nameservers(settings.nameservers), **_asking(settings))
    return BulkResolver(client, max_cnames=settings.max_cnames, default_negative_ttl=settings.default_negative_ttl)


def build_resolver(settings: DnsSettings) -> Resolver:
    """A resolver for `settings`; must be called inside the running event loop."""
    client = DnsClient(resolve_nameservers(settings.nameservers), **_asking(settings))
    cache = LookupCache(settings.cache_size) if settings.cache_size else None
    return Resolver(client, cache, max_cnames=settings.max_cnames, default_negative_ttl=settings.default_negative_ttl)


__all__ = ["BulkResolver", "Resolver", "build_bulk_resolver", "build_resolver"]
