"""Registry records: devices, residents and responders as staff keep them."""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.models import DeviceType


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    phone: str


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    type: DeviceType
    name: str | None = None
    resident_id: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    serial_port: str | None = None
    serial_addr: int | None = None
    zigbee_name: str | None = None
    sia_account: str | None = None
    sia_zone: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ResidentRecord:
    resident_id: str
    name: str
    phone: str | None = None
    building: str | None = None
    unit: str | None = None
    room: str | None = None
    grid: str | None = None
    lives_alone: bool = False
    medical_notes: str | None = None
    contacts: tuple[Contact, ...] = ()
    responders: tuple[str, ...] = ()
    attributes: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ResponderRecord:
    responder_id: str
    name: str
    role: str
    phone: str | None = None
    building: str | None = None
    grid: str | None = None
    channels: tuple[str, ...] = ()
    skills: tuple[str, ...] = ()
    on_duty: str | None = None
    attributes: tuple[tuple[str, str], ...] = field(default_factory=tuple)
