"""Which registered device a source address names: (serial port, addr), zigbee name, SIA
account (+ zone).

Built from the whole registry (``Store.devices()``) and rebuilt every ``refresh`` seconds, and
on a miss at most once per ``recheck`` seconds (imports run in another process, so a device
registered a moment ago is found without a restart, while a stream of unknown addresses
cannot hammer the database). The reverse direction (device → address) is what feedback to a
serial device needs.

While the database is away a failed load (``load_failed``) keeps what is in memory: a known
address still resolves, and the next try waits ``recheck`` seconds, so an outage costs one
failed read per ``recheck``, not one per message. ``current`` then says that a miss means
"cannot tell" rather than "not registered" (``gateway.ingest.sink.DeviceSink.resolve``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

from devices.codecs import DeviceAddress
from devices.dc09 import address as sia_address
from devices.records import DeviceRecord
from devices.serial_frame import address as serial_address
from devices.zigbee2mqtt import SOURCE as ZIGBEE_SOURCE


class _Devices(Protocol):
    async def devices(self) -> list[DeviceRecord]: ...


def addresses_of(record: DeviceRecord) -> list[DeviceAddress]:
    out: list[DeviceAddress] = []
    if record.serial_port is not None and record.serial_addr is not None:
        out.append(serial_address(record.serial_port, record.serial_addr))
    if record.zigbee_name is not None:
        out.append(DeviceAddress(ZIGBEE_SOURCE, (record.zigbee_name,)))
    if record.sia_account is not None:
        out.append(sia_address(record.sia_account, record.sia_zone))
    return out


class AddressIndex:
    def __init__(
        self,
        store: _Devices,
        *,
        refresh: float = 60.0,
        recheck: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh = refresh
        self._recheck = recheck
        self._clock = clock
        self._by_address: dict[DeviceAddress, str] = {}
        self._by_device: dict[str, list[DeviceAddress]] = {}
        self._loaded_at: float | None = None
        self._failed_at: float | None = None  # the last load failed (database away)
        self._by_pending: dict[str, str] | None = None  # built on demand, see registered_as

    async def load(self) -> None:
        records = await self._store.devices()
        by_address: dict[DeviceAddress, str] = {}
        by_device: dict[str, list[DeviceAddress]] = {}
        for record in records:
            for where in addresses_of(record):
                by_address.setdefault(where, record.device_id)
                by_device.setdefault(record.device_id, []).append(where)
        self._by_address, self._by_device = by_address, by_device
        self._loaded_at = self._clock()
        self._failed_at = None
        self._by_pending = None

    def load_failed(self) -> None:
        """The registry could not be read: keep what is known, try again after ``recheck``."""
        self._failed_at = self._clock()

    @property
    def current(self) -> bool:
        """The last load succeeded: an address not in memory is not registered."""
        return self._loaded_at is not None and self._failed_at is None

    def cached(self, where: DeviceAddress) -> str | None:
        return self._by_address.get(where)

    def needs_load(self, where: DeviceAddress) -> bool:
        """Whether answering for ``where`` should read the registry first."""
        now = self._clock()
        if self._failed_at is not None:
            return now - self._failed_at >= self._recheck
        age = None if self._loaded_at is None else now - self._loaded_at
        stale = age is None or age >= self._refresh
        missing = where not in self._by_address and (age is None or age >= self._recheck)
        return stale or missing

    async def resolve(self, where: DeviceAddress) -> str | None:
        """The device id, or None for an address nobody registered (yet). Raises the store's
        error when the registry has to be read and cannot be."""
        if self.needs_load(where):
            await self.load()
        return self._by_address.get(where)

    async def registered_as(self, pending_id: str) -> str | None:
        """The device registered at the address whose provisional id (``pending_id()``) this
        is, or None. For the spool drain: messages of an address that could not be looked up
        during a database outage were kept under that id. Raises the store's error."""
        now = self._clock()
        loaded = self._loaded_at
        if loaded is None or self._failed_at is not None or now - loaded >= self._recheck:
            await self.load()
        if self._by_pending is None:
            self._by_pending = {w.pending_id(): d for w, d in self._by_address.items()}
        return self._by_pending.get(pending_id)

    def address_of(self, device_id: str, source: str) -> DeviceAddress | None:
        for where in self._by_device.get(device_id, ()):
            if where.source == source:
                return where
        return None
