"""What the duty-desk API works with (store, engine, registry snapshot, the live feed) and how
domain records become response bodies, with contact details withheld from roles that do not
need them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

from alerts.channels.base import Notifier
from alerts.engine import AlertEngine
from alerts.models import Alert, TimelineEntry
from alerts.store import EngineStore
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import RegistryView
from gateway.audit import AuditStore
from gateway.config import Settings
from gateway.http.api import labels
from gateway.http.api.models import (
    AlertOut,
    ContactOut,
    DeviceOut,
    Labels,
    ResidentOut,
    ResponderBrief,
    TimelineOut,
)
from gateway.rate_limit import DeviceRateLimiter
from gateway.storage.base import ConsoleReads, DeviceStatus, Store
from gateway.storage.buckets import ReadingQueries
from gateway.users import UserStore

LOW_BATTERY: Final = 20  # percent; at or below this a device is listed for a battery change
_CHUNK: Final = 500


class ApiStore(Store, EngineStore, ConsoleReads, UserStore, AuditStore, Protocol):
    """The store as the API sees it: registry, readings, alerts, users and the audit log."""


@dataclass
class Console:
    store: ApiStore
    engine: AlertEngine
    registry: RegistryView
    settings: Settings
    notifier: Notifier | None = None
    # Flooding devices (in this process's memory: see gateway.rate_limit).
    limiter: DeviceRateLimiter | None = None
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    readings: ReadingQueries = field(init=False)

    def __post_init__(self) -> None:
        self.readings = ReadingQueries(self.store)

    def now(self) -> datetime:
        return self.clock()

    async def refresh_registry(self, device_id: str | None = None) -> None:
        """After a registry change made here: every part sees it at once (the registry's
        version moved; this reads it now rather than at the next message)."""
        await self.registry.refresh()

    async def unreached(self, alert_ids: Sequence[str]) -> set[str]:
        """Which alerts had an escalation step that reached nobody."""
        return await self.store.unreached_alerts(alert_ids)

    async def alert_views(self, alerts: Sequence[Alert]) -> list[AlertOut]:
        unreached = await self.unreached([a.id for a in alerts])
        return [self.alert_out(a, a.id in unreached) for a in alerts]

    def alert_out(self, alert: Alert, unreached: bool) -> AlertOut:
        device = self.registry.device(alert.device_id)
        resident = self.registry.resident(alert.resident_id) or self.registry.resident_of(
            alert.device_id
        )
        address = _address(resident, device)
        return AlertOut(
            id=alert.id,
            kind=alert.kind,
            kind_label=labels.kind_labels(alert.kind),
            priority=alert.priority,
            priority_label=labels.priority_labels(alert.priority),
            state=alert.state,
            opened_at=alert.opened_at,
            updated_at=alert.updated_at,
            device_id=alert.device_id,
            device_name=device.name if device else None,
            resident_id=alert.resident_id or (resident.resident_id if resident else None),
            resident_name=resident.name if resident else None,
            address=address if (address.zh or address.en) else None,
            count=alert.count,
            acked_at=alert.acked_at,
            acked_by=alert.acked_by,
            assignee=alert.assignee,
            incident_id=alert.incident_id,
            resolved_at=alert.resolved_at,
            resolved_by=alert.resolved_by,
            outcome=alert.outcome,
            note=alert.note,
            unreached=unreached,
        )

    def resident_out(self, resident: ResidentRecord, *, contacts: bool) -> ResidentOut:
        """``contacts``: the caller's role may see phones, medical notes and family."""
        assigned = [
            self.registry.responders[rid]
            for rid in resident.responders
            if rid in self.registry.responders
        ]
        return ResidentOut(
            resident_id=resident.resident_id,
            name=resident.name,
            address=labels.address_labels(resident.building, resident.unit, resident.room),
            building=resident.building,
            unit=resident.unit,
            room=resident.room,
            grid=resident.grid,
            lives_alone=resident.lives_alone,
            phone=resident.phone if contacts else None,
            medical_notes=resident.medical_notes if contacts else None,
            contacts=[
                ContactOut(name=c.name, phone=c.phone if contacts else None)
                for c in resident.contacts
            ]
            if contacts
            else [],
            responders=[responder_brief(r, contacts=contacts) for r in assigned],
            contact_details=contacts,
        )

    async def device_rows(self, device_id: str | None = None) -> list[DeviceOut]:
        now = self.now()
        devices = [self.device_out(d, now) for d in await self.store.device_status(device_id)]
        return await self._with_flags(devices, now)

    async def _with_flags(self, devices: list[DeviceOut], now: datetime) -> list[DeviceOut]:
        """Flood flags as the database has them: the same on every instance and after a
        restart; a flag clears after ``device_flag_clear`` without an over-rate message."""
        clear = timedelta(seconds=self.settings.ingest.device_flag_clear)
        flags = await self.store.flood_flags(now - clear)
        if not flags:
            return devices
        out = []
        for d in devices:
            flag = flags.get(d.device_id)
            if flag is not None:
                d = d.model_copy(
                    update={
                        "rate_limited": True,
                        "rate_limited_since": flag.since,
                        "rate_limited_last": flag.last_over,
                        "rejected_recently": flag.over_count,
                    }
                )
            out.append(d)
        return out

    def device_out(self, d: DeviceStatus, now: datetime) -> DeviceOut:
        last_seen = d.last_seen
        resident = self.registry.resident(d.resident_id)
        address = labels.address_labels(
            d.building or (resident.building if resident else None),
            d.unit or (resident.unit if resident else None),
            d.room or (resident.room if resident else None),
        )
        return DeviceOut(
            device_id=d.device_id,
            type=d.type,
            type_label=labels.device_type_labels(d.type),
            name=d.name,
            resident_id=d.resident_id,
            building=d.building,
            unit=d.unit,
            room=d.room,
            address=address,
            last_seen=last_seen,
            battery=d.battery,
            # v_devices decides (its will, and silence past the type's offline timeout): the
            # API, the offline check and SQL users see one answer.
            online=d.online,
            rssi=d.rssi,
            offline=last_seen is not None and not d.online,
            low_battery=d.battery is not None and d.battery <= LOW_BATTERY,
            never_seen=last_seen is None,
        )


def responder_brief(r: ResponderRecord, *, contacts: bool) -> ResponderBrief:
    return ResponderBrief(
        responder_id=r.responder_id,
        name=r.name,
        role=r.role,
        phone=r.phone if contacts else None,
    )


def timeline_out(entry: TimelineEntry) -> TimelineOut:
    try:
        detail = json.loads(entry.detail)
    except ValueError:
        detail = entry.detail
    if not isinstance(detail, dict):
        detail = {"value": detail}
    return TimelineOut(at=entry.at, actor=entry.actor, action=entry.action, detail=detail)


def _address(resident: ResidentRecord | None, device: DeviceRecord | None) -> Labels:
    r, d = resident, device
    return labels.address_labels(
        (r.building if r else None) or (d.building if d else None),
        (r.unit if r else None) or (d.unit if d else None),
        (r.room if r else None) or (d.room if d else None),
    )
