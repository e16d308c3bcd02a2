"""The registry as the domain sees it: a port the runtime implements (gateway/registry.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from devices.records import DeviceRecord, ResidentRecord, ResponderRecord


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
