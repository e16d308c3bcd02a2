"""Helpers for the source tests (serial, SIA, zigbee2mqtt): registered records with source
addresses, and a listener that records what reached the alert side (``consequences.listen``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from devices.models import Event
from devices.records import DeviceRecord
from gateway.storage.factory import open_store


async def register_records(db_url: str, records: Sequence[DeviceRecord]) -> None:
    store = open_store(db_url)
    await store.open()
    try:
        await store.upsert_devices(list(records))
    finally:
        await store.close()


@dataclass
class Recorder:
    """Registered with ``gateway.consequences.listen``: what the alert engine was given."""

    name: str = "recorder"
    seen: list[tuple[Event, bool]] = field(default_factory=list)

    async def handle_event(self, event: Event, *, duplicate: bool) -> None:
        self.seen.append((event, duplicate))

    def of(self, device_id: str) -> list[tuple[str, bool]]:
        return [(e.type.value, dup) for e, dup in self.seen if e.device_id == device_id]
