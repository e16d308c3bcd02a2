"""An in-memory ``RegistryView``: the registry as loaded at the last ``refresh``.

The runtime's live view (a version counter in the database, see ``devices.registry``) is the
one the gateway means to run with; this one serves unit tests (built from records, no source)
and any wiring that has no live view yet: there ``refresh`` reloads the three tables from its
source, so it keeps the contract ("every change committed so far") at the price of a full read.
Concurrent refreshes share one load.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from devices.records import DeviceRecord, ResidentRecord, ResponderRecord

log = logging.getLogger(__name__)


class RegistrySource(Protocol):
    async def devices(self) -> list[DeviceRecord]: ...

    async def residents(self) -> list[ResidentRecord]: ...

    async def responders(self) -> list[ResponderRecord]: ...


class RegistrySnapshot:
    def __init__(
        self,
        source: RegistrySource | None = None,
        *,
        devices: Iterable[DeviceRecord] = (),
        residents: Iterable[ResidentRecord] = (),
        responders: Iterable[ResponderRecord] = (),
        unavailable: tuple[type[Exception], ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``unavailable``: the source's "database away" errors; a refresh that meets one
        keeps the last snapshot (logged) instead of raising."""
        self._source = source
        self._unavailable = unavailable
        self._clock = clock
        self._devices = {d.device_id: d for d in devices}
        self._residents = {r.resident_id: r for r in residents}
        self._responders = {r.responder_id: r for r in responders}
        self._lock = asyncio.Lock()
        self._loaded_at: float | None = None

    @property
    def devices(self) -> Mapping[str, DeviceRecord]:
        return self._devices

    @property
    def residents(self) -> Mapping[str, ResidentRecord]:
        return self._residents

    @property
    def responders(self) -> Mapping[str, ResponderRecord]:
        return self._responders

    def device(self, device_id: str | None) -> DeviceRecord | None:
        return self._devices.get(device_id) if device_id else None

    def resident(self, resident_id: str | None) -> ResidentRecord | None:
        return self._residents.get(resident_id) if resident_id else None

    def resident_of(self, device_id: str | None) -> ResidentRecord | None:
        device = self.device(device_id)
        return self.resident(device.resident_id) if device else None

    def put(
        self,
        *,
        devices: Iterable[DeviceRecord] = (),
        residents: Iterable[ResidentRecord] = (),
        responders: Iterable[ResponderRecord] = (),
    ) -> None:
        """Add or replace records in memory (tests; a snapshot without a source)."""
        self._devices.update((d.device_id, d) for d in devices)
        self._residents.update((r.resident_id, r) for r in residents)
        self._responders.update((r.responder_id, r) for r in responders)

    async def refresh(self) -> None:
        if self._source is None:
            return
        asked = self._clock()
        async with self._lock:
            if self._loaded_at is not None and self._loaded_at >= asked:
                return  # a load that started after we asked has just finished
            started = self._clock()
            try:
                devices = await self._source.devices()
                residents = await self._source.residents()
                responders = await self._source.responders()
            except self._unavailable as exc:
                log.warning("registry refresh failed, keeping the last snapshot: %s", exc)
                return
            self._devices = {d.device_id: d for d in devices}
            self._residents = {r.resident_id: r for r in residents}
            self._responders = {r.responder_id: r for r in responders}
            self._loaded_at = started
