"""A TTL cache of `Lookup` values with a size bound (least recently used goes first).

Answers stay for their TTL, NXDOMAIN and NODATA for their negative TTL
(RFC 2308), both capped; temporary errors are never cached.  The clock is
injected so tests need not sleep.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from rdnsgate.model import Lookup

Key = tuple[str, str]


class LookupCache:
    def __init__(self, max_entries: int = 50_000, max_ttl: int = 86_400, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.clock = clock
        self._data: OrderedDict[Key, tuple[float, Lookup]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: Key) -> Lookup | None:
        item = self._data.get(key)
        if item is None:
            self.misses += 1
            return None
        expires, value = item
        if expires <= self.clock():
            del self._data[key]
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Key, value: Lookup) -> None:
        if self.max_entries <= 0 or value.temporary:
            return
        ttl = value.ttl if value.negative_ttl is None else value.negative_ttl
        ttl = min(ttl, self.max_ttl)
        if ttl <= 0:
            return
        self._data[key] = (self.clock() + ttl, value)
        self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
