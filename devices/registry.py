"""Which device ids the registry knows, cached so the hot path asks the database rarely.

Imports run in another process (``scgw import``), so a miss is re-checked against the store,
at most once per ``recheck`` seconds per id.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


class _Lookup(Protocol):
    async def known_device_ids(self) -> set[str]: ...

    async def device_exists(self, device_id: str) -> bool: ...


class RegistryCache:
    # Bounded so a stream of random ids cannot grow memory without limit.
    MAX_NEGATIVE = 100_000

    def __init__(
        self,
        store: _Lookup,
        *,
        recheck: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._recheck = recheck
        self._clock = clock
        self._known: set[str] = set()
        self._unknown: OrderedDict[str, float] = OrderedDict()

    async def load(self) -> None:
        self._known = await self._store.known_device_ids()
        self._unknown.clear()

    def adopt(self, device_id: str) -> None:
        self._known.add(device_id)
        self._unknown.pop(device_id, None)

    def cached(self, device_id: str) -> bool | None:
        """True/False when the cache can answer now, None when the store must be asked."""
        if device_id in self._known:
            return True
        checked = self._unknown.get(device_id)
        if checked is not None and self._clock() - checked < self._recheck:
            return False
        return None

    async def is_known(self, device_id: str) -> bool:
        answer = self.cached(device_id)
        if answer is not None:
            return answer
        if await self._store.device_exists(device_id):
            self.adopt(device_id)
            return True
        self._unknown[device_id] = self._clock()
        self._unknown.move_to_end(device_id)
        while len(self._unknown) > self.MAX_NEGATIVE:
            self._unknown.popitem(last=False)
        return False
