"""The one storage interface both backends (SQLite, PostgreSQL) implement.

The ingest pipeline acknowledges a message to its source only after the awaited call that
stored it returns: every write method here is durable (committed) when it returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from alerts.models import AlertState, Priority
from devices.models import DeviceHealth, Event, PendingSighting, Reading
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import UpsertResult


class StoreError(Exception):
    """The database could not be reached or refused a write; the caller must not ack."""


class StoreRefused(Exception):
    """The database refused this content (a value it cannot store), not an outage: trying
    again cannot help, so the caller sets the input aside (durably) and goes on — it must
    never stall ingest or be retried as if the database were away."""


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


@dataclass(frozen=True, slots=True)
class DeviceStatus:
    """A device as the console lists it: registry fields, last state and signal."""

    device_id: str
    type: str
    name: str | None
    resident_id: str | None
    building: str | None
    unit: str | None
    room: str | None
    last_seen: datetime | None
    battery: int | None
    online: bool
    rssi: float | None


@dataclass(frozen=True, slots=True)
class AlertResponse:
    """When an alert opened and when a human first answered it (None: nobody did)."""

    alert_id: str
    priority: Priority
    state: AlertState
    opened_at: datetime
    answered_at: datetime | None


@dataclass(frozen=True, slots=True)
class TimelineChange:
    """One timeline row as the live feed follows it (ids increase)."""

    id: int
    alert_id: str
    action: str


class ConsoleReads(Protocol):
    """Read queries of the HTTP side; both stores implement them (gateway/storage/reads.py)."""

    async def device_status(self, device_id: str | None = None) -> list[DeviceStatus]:
        """Every registered device (or the one named), ordered by id."""

    async def unreached_alerts(self, alert_ids: Sequence[str]) -> set[str]:
        """Which of ``alert_ids`` had an escalation step that reached nobody."""

    async def response_samples(self, start: datetime, end: datetime) -> list[AlertResponse]:
        """Alerts opened in [start, end) with the time of their first human answer."""

    async def latest_timeline_id(self) -> int:
        """The newest timeline row's id (0 when there is none)."""

    async def timeline_changes(self, after_id: int, limit: int) -> list[TimelineChange]:
        """Timeline rows with id > ``after_id``, oldest first, at most ``limit``."""


@dataclass(frozen=True, slots=True)
class FloodFlag:
    """A device over its rate: since when, the last message over it, how many were."""

    device_id: str
    since: datetime
    last_over: datetime
    over_count: int


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

    async def set_device_timeouts(self, seconds: Mapping[str, float]) -> None:
        """How long each device type may be silent and still be online (``"default"`` for
        the rest): the one definition ``v_devices.online`` uses."""

    async def save_flags(self, flags: Sequence[FloodFlag]) -> None:
        """Upsert devices' flood flags (shared by every instance, kept across restarts)."""

    async def flood_flags(self, since: datetime) -> dict[str, FloodFlag]:
        """Flags whose last over-rate message is at or after ``since``."""

    async def set_aside(
        self, at: datetime, lane: str, source: str, reason: str, content: str
    ) -> None:
        """Keep an input that will not be stored (refused content, poison) for people to see;
        the content is written escaped, so it never fails for what it contains."""

    # -- registry ---------------------------------------------------------------------------
    async def registry_version(self) -> int:
        """A number that changes with every committed change to devices, residents,
        responders or their assignments (a trigger bumps it in the same transaction)."""

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
