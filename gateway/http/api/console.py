"""What the duty-desk API works with (store, engine, registry snapshot, the live feed) and how
domain records become response bodies, with contact details withheld from roles that do not
need them."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from alerts.channels.base import Notifier
from alerts.directory import Directory
from alerts.engine import AlertEngine, EngineStore
from alerts.models import Alert, TimelineEntry
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
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
from gateway.registry import LiveRegistry
from gateway.storage._alerts import as_instant
from gateway.storage.buckets import ReadingQueries
from gateway.users import UserStore

LOW_BATTERY: Final = 20  # percent; at or below this a device is listed for a battery change
_CHUNK: Final = 500

DEVICE_SQL: Final = (
    "SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,"
    " d.last_seen, d.battery, d.online, s.rssi"
    " FROM v_devices d LEFT JOIN device_state s ON s.device_id = d.device_id"
)


class ApiStore(EngineStore, UserStore, AuditStore, Protocol):
    """The store as the API sees it: registry, readings, alerts, users and the audit log."""


@dataclass
class Console:
    store: ApiStore
    engine: AlertEngine
    directory: Directory
    settings: Settings
    registry: LiveRegistry | None = None
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
        if self.registry is not None:
            await self.registry.check()

    async def unreached(self, alert_ids: Sequence[str]) -> set[str]:
        """Which alerts had an escalation step that reached nobody."""
        found: set[str] = set()
        ids = list(dict.fromkeys(alert_ids))
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = await self.store.query(
                "SELECT DISTINCT alert_id FROM alert_timeline"
                f" WHERE action = 'step_unreached' AND alert_id IN ({marks})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def alert_views(self, alerts: Sequence[Alert]) -> list[AlertOut]:
        unreached = await self.unreached([a.id for a in alerts])
        return [self.alert_out(a, a.id in unreached) for a in alerts]

    def alert_out(self, alert: Alert, unreached: bool) -> AlertOut:
        device = self.directory.device(alert.device_id)
        resident = self.directory.resident(alert.resident_id) or self.directory.resident_of(
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
            resolved_at=alert.resolved_at,
            resolved_by=alert.resolved_by,
            outcome=alert.outcome,
            note=alert.note,
            unreached=unreached,
        )

    def resident_out(self, resident: ResidentRecord, *, contacts: bool) -> ResidentOut:
        """``contacts``: the caller's role may see phones, medical notes and family."""
        assigned = [
            self.directory.responders[rid]
            for rid in resident.responders
            if rid in self.directory.responders
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
        sql, params = DEVICE_SQL, []
        if device_id is not None:
            sql += " WHERE d.device_id = ?"
            params.append(device_id)
        rows = await self.store.query(sql + " ORDER BY d.device_id", params)
        now = self.now()
        devices = [self.device_out(r, now) for r in rows]
        return self._with_flags(devices)

    def _with_flags(self, devices: list[DeviceOut]) -> list[DeviceOut]:
        limiter = self.limiter
        flags = limiter.flags() if limiter is not None else {}
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
                        "rate_limited_last": flag.last_rejected,
                        "rejected_recently": flag.rejected,
                    }
                )
            out.append(d)
        return out

    def device_out(self, row: Sequence[Any], now: datetime) -> DeviceOut:
        device_id, dtype, name, resident_id, building, unit, room, seen, battery, online, rssi = row
        last_seen = as_instant(seen)
        is_online = bool(online)
        timeout = timedelta(seconds=self.settings.alerts.offline_timeout(str(dtype)))
        silent = last_seen is not None and now - last_seen > timeout
        resident = self.directory.resident(resident_id)
        address = labels.address_labels(
            building or (resident.building if resident else None),
            unit or (resident.unit if resident else None),
            room or (resident.room if resident else None),
        )
        return DeviceOut(
            device_id=str(device_id),
            type=str(dtype),
            type_label=labels.device_type_labels(str(dtype)),
            name=name,
            resident_id=resident_id,
            building=building,
            unit=unit,
            room=room,
            address=address,
            last_seen=last_seen,
            battery=None if battery is None else int(battery),
            online=is_online and not silent,
            rssi=None if rssi is None else float(rssi),
            offline=last_seen is not None and (not is_online or silent),
            low_battery=battery is not None and int(battery) <= LOW_BATTERY,
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
