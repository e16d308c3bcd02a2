"""The one storage interface both backends (SQLite, PostgreSQL) implement.

The ingest pipeline acknowledges a message to its source only after the awaited call that
stored it returns: every write method here is durable (committed) when it returns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from devices.models import DeviceHealth, Event, PendingSighting, Reading
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import UpsertResult


class StoreError(Exception):
    """The database could not be reached or refused a write; the caller must not ack."""


@dataclass(frozen=True, slots=True)
class BatchResult:
    readings_new: int
    readings_duplicate: int


@dataclass(frozen=True, slots=True)
class PendingDevice:
    """An unknown device seen on the wire, waiting for a technician to adopt it."""

    device_id: str
    first_seen: datetime
    last_seen: datetime
    messages: int
    sos_count: int
    last_kind: str
    last_payload: str


class Store(Protocol):
    """Durable storage. All methods are coroutines; writes commit before returning."""

    backend: str

    async def open(self) -> None:
        """Connect and run migrations (idempotent)."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise StoreError when the database is not reachable."""

    async def migrate(self) -> int:
        """Create or upgrade the schema; returns the schema version now in place."""

    # -- ingest -----------------------------------------------------------------------------
    async def store_event(self, event: Event) -> bool:
        """Store one event and commit. False when it was a duplicate (same dedup key)."""

    async def store_batch(
        self, readings: Sequence[Reading], health: Sequence[DeviceHealth]
    ) -> BatchResult:
        """Store readings (deduplicated by device, metric, ts) and device health in one
        transaction."""

    async def record_health(self, health: Sequence[DeviceHealth]) -> None:
        """Merge last-seen / battery / online into device state and commit."""

    async def record_pending(self, sightings: Sequence[PendingSighting]) -> None:
        """Upsert unknown devices into the pending list (count, last payload, sos count)."""

    # -- registry ---------------------------------------------------------------------------
    async def known_device_ids(self) -> set[str]: ...

    async def device_exists(self, device_id: str) -> bool: ...

    async def upsert_devices(self, rows: Sequence[DeviceRecord]) -> UpsertResult: ...

    async def upsert_residents(self, rows: Sequence[ResidentRecord]) -> UpsertResult: ...

    async def upsert_responders(self, rows: Sequence[ResponderRecord]) -> UpsertResult: ...

    async def devices(self) -> list[DeviceRecord]:
        """The whole device registry, ordered by id."""

    async def residents(self) -> list[ResidentRecord]:
        """All residents with contacts and assigned responders (in order), ordered by id."""

    async def responders(self) -> list[ResponderRecord]: ...

    async def existing_ids(self, table: str, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` exist in ``table`` (``devices``, ``residents``, ``responders``)."""

    # -- reading back (views are the stable surface) ------------------------------------------
    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read-only query with ``?`` placeholders (translated per backend)."""

    async def pending_devices(self) -> list[PendingDevice]: ...
