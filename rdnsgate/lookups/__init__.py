"""The only code that talks DNS: wire codec, transport, cache, resolver, gathering."""

from __future__ import annotations

from rdnsgate.config import DnsSettings
from rdnsgate.lookups.cache import LookupCache
from rdnsgate.lookups.lookup import Resolver
from rdnsgate.lookups.nameservers import resolve_nameservers
from rdnsgate.lookups.transport import DnsClient


def build_resolver(settings: DnsSettings) -> Resolver:
    """A resolver for `settings`; must be called inside the running event loop."""
    client = DnsClient(
        resolve_nameservers(settings.nameservers),
        timeout=settings.timeout,
        tries=settings.tries,
        max_inflight=settings.max_inflight,
    )
    cache = LookupCache(settings.cache_size) if settings.cache_size else None
    return Resolver(client, cache, max_cnames=settings.max_cnames, default_negative_ttl=settings.default_negative_ttl)


__all__ = ["Resolver", "build_resolver"]
