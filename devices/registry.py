"""Which device ids the registry knows, cached so the hot path asks the database rarely.

Imports run in another process (``scgw import``), so a miss is re-checked against the store,
at most once per ``recheck`` seconds per id.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from devices.records import DeviceRecord, ResidentRecord, ResponderRecord


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


class RegistryView(Protocol):
    """The registry as every part of the gateway sees it (ingest, alerts, the HTTP side).

    One implementation lives in the runtime (``gateway``), which keeps it fresh: a change
    committed by ``scgw import``, the API or another instance is seen at the next message,
    never after a cache timer. Reads are synchronous and answer from memory; ``refresh``
    is the one cheap check (a version number in the database) that brings it up to date,
    and while the database is away it keeps the last snapshot rather than raising.
    """

    @property
    def devices(self) -> Mapping[str, DeviceRecord]: ...

    @property
    def residents(self) -> Mapping[str, ResidentRecord]: ...

    @property
    def responders(self) -> Mapping[str, ResponderRecord]: ...

    def device(self, device_id: str | None) -> DeviceRecord | None: ...

    def resident(self, resident_id: str | None) -> ResidentRecord | None: ...

    def resident_of(self, device_id: str | None) -> ResidentRecord | None: ...

    async def refresh(self) -> None:
        """See every change committed so far (cheap when nothing changed); never raises for
        an unreachable database (the last snapshot stays)."""


@dataclass(frozen=True, slots=True)
class UpsertResult:
    inserted: int
    updated: int
    unchanged: int


class RegistryWriter(Protocol):
    """What ``scgw import`` needs of a store: upserts (one transaction each) and which ids
    already exist. Both storage backends implement it."""

    async def upsert_devices(self, rows: Sequence[DeviceRecord]) -> UpsertResult: ...

    async def upsert_residents(self, rows: Sequence[ResidentRecord]) -> UpsertResult: ...

    async def upsert_responders(self, rows: Sequence[ResponderRecord]) -> UpsertResult: ...

    async def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist in ``table`` (``devices``, ``residents``, ``responders``)."""
