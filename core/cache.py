"""A small per-process cache of looked-up configuration (tenants by domain, channel accounts).

Entries live ``ttl`` seconds (misses ``miss_ttl``, so a flood of unknown keys costs one query a
second). Concurrent misses of one key share one load: when an entry expires under load, hundreds
of requests in flight would otherwise each run the same query at the same moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TTLCache(Generic[K, V]):
    def __init__(self, ttl: float, miss_ttl: float = 1.0, max_size: int = 10_000) -> None:
        self.ttl = ttl
        self.miss_ttl = miss_ttl
        self.max_size = max_size
        self._data: dict[K, tuple[float, V | None]] = {}
        # Loads in flight, per event loop (a process may run several: the web loop, a worker's).
        self._flights: dict[tuple[int, K], asyncio.Task[V | None]] = {}

    async def get(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        hit = self._data.get(key)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        loop = asyncio.get_running_loop()
        flight = (id(loop), key)
        task = self._flights.get(flight)
        if task is None:
            task = self._flights[flight] = loop.create_task(self._load(key, load, flight))
        # One waiter giving up (a client that went away) must not cancel the others' load.
        return await asyncio.shield(task)

    async def _load(self, key: K, load: Callable[[], Awaitable[V | None]], flight: tuple[int, K]) -> V | None:
        try:
            value = await load()
            if len(self._data) >= self.max_size:
                self._data.clear()
            self._data[key] = (time.monotonic() + (self.ttl if value is not None else self.miss_ttl), value)
            return value
        finally:
            self._flights.pop(flight, None)

    def forget(self, key: K) -> None:
        self._data.pop(key, None)

    def clear(self) -> None:
        self._data.clear()

    def forget_where(self, stale: Callable[[V | None], bool]) -> None:
        """Forget every entry whose value (None for a cached miss) ``stale`` says is stale."""
        for key in [k for k, (_, value) in self._data.items() if stale(value)]:
            del self._data[key]
