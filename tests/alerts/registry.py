"""An in-memory ``devices.registry.RegistryView`` for unit tests of the alert side (the
gateway runs with ``gateway.registry.LiveRegistry``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from devices.records import DeviceRecord, ResidentRecord, ResponderRecord


class InMemoryRegistry:
    """A ``devices.registry.RegistryView`` from records (unit tests of the alert side)."""

    def __init__(
        self,
        *,
        devices: Iterable[DeviceRecord] = (),
        residents: Iterable[ResidentRecord] = (),
        responders: Iterable[ResponderRecord] = (),
    ) -> None:
        self._devices = {d.device_id: d for d in devices}
        self._residents = {r.resident_id: r for r in residents}
        self._responders = {r.responder_id: r for r in responders}

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
        """Add or replace records."""
        self._devices.update((d.device_id, d) for d in devices)
        self._residents.update((r.resident_id, r) for r in residents)
        self._responders.update((r.responder_id, r) for r in responders)

    async def refresh(self) -> None:
        """Nothing to read: the records are what the test put here."""
