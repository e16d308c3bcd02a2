"""The one registry view of the running gateway: devices, residents, responders and the
source addresses devices are known by, shared by ingest, alerts and the HTTP side.

Fresh at the next message, not after a timer: the database keeps a version number that a
trigger bumps in the same transaction as any registry change (whoever made it: ``scgw
import`` in another process, the API, another gateway instance), so ``refresh()`` is one
single-row read, and a reload only when that number moved. The event path refreshes before
every event; the bulk path when it meets an id it does not know; the dispatcher before it
resolves a step's targets.

While the database is away the last snapshot keeps answering (a known button still raises its
alert from memory); ``current`` then says that a miss means "cannot tell" rather than "not
registered", and checks are not retried more often than every ``retry_after`` seconds, so an
outage costs one failed read per interval, not one per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from devices.addresses import addresses_of
from devices.codecs import NATIVE_SOURCE, DeviceAddress
from devices.dc09 import account_address
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.base import StoreError

__all__ = ["LiveRegistry", "RegistrySnapshot"]

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 1.0  # a version read that takes longer counts as "database away"
RETRY_AFTER = 2.0  # after a failed check, answer from memory this long before asking again


class RegistrySource(Protocol):
    async def registry_version(self) -> int: ...

    async def devices(self) -> list[DeviceRecord]: ...

    async def residents(self) -> list[ResidentRecord]: ...

    async def responders(self) -> list[ResponderRecord]: ...


@dataclass(frozen=True, slots=True)
class RegistrySnapshot:
    """The whole registry at one version, with the address index built from it."""

    version: int
    devices: Mapping[str, DeviceRecord]
    residents: Mapping[str, ResidentRecord]
    responders: Mapping[str, ResponderRecord]
    by_address: Mapping[DeviceAddress, str] = field(default_factory=dict)
    addresses: Mapping[str, tuple[DeviceAddress, ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        version: int,
        devices: list[DeviceRecord],
        residents: list[ResidentRecord],
        responders: list[ResponderRecord],
    ) -> RegistrySnapshot:
        by_address: dict[DeviceAddress, str] = {}
        addresses: dict[str, tuple[DeviceAddress, ...]] = {}
        for record in devices:
            where = tuple(addresses_of(record))
            addresses[record.device_id] = where
            for address in where:
                by_address.setdefault(address, record.device_id)  # the first registered wins
        return cls(
            version=version,
            devices=MappingProxyType({d.device_id: d for d in devices}),
            residents=MappingProxyType({r.resident_id: r for r in residents}),
            responders=MappingProxyType({r.responder_id: r for r in responders}),
            by_address=MappingProxyType(by_address),
            addresses=MappingProxyType(addresses),
        )


EMPTY = RegistrySnapshot(0, MappingProxyType({}), MappingProxyType({}), MappingProxyType({}))


class LiveRegistry:
    """Implements ``devices.registry.RegistryView`` (and the address lookups ingest needs)."""

    def __init__(
        self,
        store: RegistrySource,
        *,
        check_timeout: float = CHECK_TIMEOUT,
        retry_after: float = RETRY_AFTER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._check_timeout = check_timeout
        self._retry_after = retry_after
        self._clock = clock
        self._snapshot = EMPTY
        self._loaded = False
        self._failed_at: float | None = None
        # When the last successful check began: a message that arrived before it is judged
        # against a registry at least as new as that message (no second read needed).
        self.checked_since = float("-inf")
        self._reload = asyncio.Lock()
        self.reloads = 0  # how often the registry was read whole (metrics, tests)

    # -- freshness ----------------------------------------------------------------------------
    @property
    def snapshot(self) -> RegistrySnapshot:
        return self._snapshot

    @property
    def current(self) -> bool:
        """The last check reached the database: a miss means "not registered"."""
        return self._loaded and self._failed_at is None

    async def load(self) -> None:
        """Read the whole registry now; raises ``StoreError`` when the database is away."""
        version = await self._store.registry_version()
        await self._load(version)

    async def refresh(self) -> None:
        await self.check()

    async def check(self) -> bool:
        """Bring the snapshot up to date; True when the database answered (the snapshot is
        current), False when it could not be asked (the last snapshot stays)."""
        started = self._clock()
        failed_at = self._failed_at
        if failed_at is not None and started - failed_at < self._retry_after:
            return False
        try:
            async with asyncio.timeout(self._check_timeout):
                version = await self._store.registry_version()
                if not self._loaded or version != self._snapshot.version:
                    await self._load(version)
        except (StoreError, TimeoutError) as exc:
            if self._failed_at is None:
                log.warning("registry not readable (%s); answering from memory", exc or "timeout")
            self._failed_at = self._clock()
            return False
        self._failed_at = None
        self.checked_since = max(self.checked_since, started)
        return True

    async def check_after(self, arrived: float) -> bool:
        """``check()``, unless a check that began after ``arrived`` (monotonic) already
        succeeded: a burst of messages costs one read, and none is judged by a registry
        older than itself."""
        if self.checked_since >= arrived:
            return True
        return await self.check()

    async def _load(self, version: int) -> None:
        async with self._reload:
            if self._loaded and self._snapshot.version == version:
                return  # another caller loaded this version while we waited
            # Version first, rows after: a change committed in between makes the rows newer
            # than the version we keep, so the next check reloads again — never the reverse.
            devices = await self._store.devices()
            residents = await self._store.residents()
            responders = await self._store.responders()
            self._snapshot = RegistrySnapshot.build(version, devices, residents, responders)
            self._loaded = True
            self.reloads += 1

    # -- RegistryView -------------------------------------------------------------------------
    @property
    def devices(self) -> Mapping[str, DeviceRecord]:
        return self._snapshot.devices

    @property
    def residents(self) -> Mapping[str, ResidentRecord]:
        return self._snapshot.residents

    @property
    def responders(self) -> Mapping[str, ResponderRecord]:
        return self._snapshot.responders

    def device(self, device_id: str | None) -> DeviceRecord | None:
        return self._snapshot.devices.get(device_id) if device_id else None

    def resident(self, resident_id: str | None) -> ResidentRecord | None:
        return self._snapshot.residents.get(resident_id) if resident_id else None

    def resident_of(self, device_id: str | None) -> ResidentRecord | None:
        device = self.device(device_id)
        return self.resident(device.resident_id) if device else None

    # -- what ingest and device feedback ask ---------------------------------------------------
    def known(self, device_id: str) -> bool:
        return device_id in self._snapshot.devices

    def device_at(self, where: DeviceAddress) -> str | None:
        """The device registered at a source address. A SIA device registered for a whole
        account (no zone) takes every zone of it that has no device of its own."""
        snapshot = self._snapshot
        if where.source == NATIVE_SOURCE:
            device_id = where.key[0]
            return device_id if device_id in snapshot.devices else None
        found = snapshot.by_address.get(where)
        if found is None:
            whole = account_address(where)
            if whole is not None:
                found = snapshot.by_address.get(whole)
        return found

    def address_of(self, device_id: str, source: str) -> DeviceAddress | None:
        for where in self._snapshot.addresses.get(device_id, ()):
            if where.source == source:
                return where
        return None

    def registered_as(self, pending_id: str) -> str | None:
        """The device registered at the address whose provisional id this is (the spool
        drain binds what was kept under that id during an outage)."""
        if pending_id in self._snapshot.devices:
            return pending_id
        for where, device_id in self._snapshot.by_address.items():
            if where.pending_id() == pending_id:
                return device_id
        return None
