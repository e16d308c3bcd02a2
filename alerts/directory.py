"""A snapshot of the registry for dispatch decisions: devices, residents, responders.

Refreshed periodically (imports happen in another process); reads never hit the database on
the alert path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from devices.records import DeviceRecord, ResidentRecord, ResponderRecord


class _RegistrySource(Protocol):
    async def devices(self) -> list[DeviceRecord]: ...

    async def residents(self) -> list[ResidentRecord]: ...

    async def responders(self) -> list[ResponderRecord]: ...


@dataclass(slots=True)
class Directory:
    devices: dict[str, DeviceRecord] = field(default_factory=dict)
    residents: dict[str, ResidentRecord] = field(default_factory=dict)
    responders: dict[str, ResponderRecord] = field(default_factory=dict)

    async def refresh(self, source: _RegistrySource) -> None:
        self.devices = {d.device_id: d for d in await source.devices()}
        self.residents = {r.resident_id: r for r in await source.residents()}
        self.responders = {r.responder_id: r for r in await source.responders()}

    def device(self, device_id: str | None) -> DeviceRecord | None:
        return self.devices.get(device_id) if device_id else None

    def resident(self, resident_id: str | None) -> ResidentRecord | None:
        return self.residents.get(resident_id) if resident_id else None

    def resident_of(self, device_id: str | None) -> ResidentRecord | None:
        device = self.device(device_id)
        return self.resident(device.resident_id) if device else None
