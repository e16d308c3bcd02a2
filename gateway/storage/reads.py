"""Typed read queries over the stable views and the alert tables, shared by both backends.

Callers outside ``gateway/storage`` (the alert checks, the HTTP console, the live feed, the
response statistics) ask these methods instead of sending SQL of their own, so table and view
internals stay private to the storage layer. Each backend runs the SQL through its own
``query`` (``?`` placeholders translated per backend); :func:`as_instant` evens out the
time types (an aggregate loses SQLite's declared column type).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from alerts.models import AlertState, Priority
from alerts.store import DevicePresence
from gateway.storage._alerts import as_instant
from gateway.storage.base import AlertResponse, DeviceStatus, TimelineChange

# Timeline actions that are a human answering an alert (time-to-acknowledge statistics).
ANSWERS: Final = ("accepted", "acknowledged", "assigned")
_CHUNK: Final = 500  # ids per IN (…) list: well under either backend's parameter limit

# What each device said last (its own state, not judged by silence): the offline check does
# the judging with its clock and the same timeouts v_devices.online uses.
_PRESENCE_SQL: Final = (
    "SELECT d.device_id, d.type, d.resident_id, s.last_seen, COALESCE(s.online, false)"
    " FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id"
    " ORDER BY d.device_id"
)
_STATUS_SQL: Final = (
    "SELECT d.device_id, d.type, d.name, d.resident_id, d.building, d.unit, d.room,"
    " d.last_seen, d.battery, d.online, s.rssi"
    " FROM v_devices d LEFT JOIN device_state s ON s.device_id = d.device_id"
)
_RESPONSE_SQL: Final = (
    "SELECT a.id, a.priority, a.state, a.opened_at, min(t.at)"
    " FROM alerts a LEFT JOIN alert_timeline t"
    f" ON t.alert_id = a.id AND t.action IN ({', '.join(repr(x) for x in ANSWERS)})"
    " WHERE a.opened_at >= ? AND a.opened_at < ?"
    " GROUP BY a.id, a.priority, a.state, a.opened_at"
)
_CHANGES_SQL: Final = (
    "SELECT id, alert_id, action FROM alert_timeline WHERE id > ? ORDER BY id LIMIT ?"
)


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


class ReadQueries:
    """Mixed into both stores; ``query`` is each backend's read-only SQL runner."""

    async def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    # -- the alert checks (alerts.store.CheckReads) -----------------------------------------
    async def device_presence(self) -> list[DevicePresence]:
        return [
            DevicePresence(str(d), str(t), _str(r), as_instant(seen), bool(online))
            for d, t, r, seen, online in await self.query(_PRESENCE_SQL)
        ]

    async def last_activity(self, event_types: Sequence[str]) -> dict[str, datetime]:
        types = list(dict.fromkeys(event_types))
        if not types:
            return {}
        marks = ", ".join("?" for _ in types)
        rows = await self.query(
            "SELECT d.resident_id, max(e.time) FROM v_events e"
            " JOIN v_devices d ON d.device_id = e.device_id"
            f" WHERE e.type IN ({marks}) AND d.resident_id IS NOT NULL"
            " GROUP BY d.resident_id",
            types,
        )
        out: dict[str, datetime] = {}
        for resident_id, latest in rows:
            at = as_instant(latest)
            if at is not None:
                out[str(resident_id)] = at
        return out

    # -- the console ------------------------------------------------------------------------
    async def device_status(self, device_id: str | None = None) -> list[DeviceStatus]:
        sql, params = _STATUS_SQL, []
        if device_id is not None:
            sql += " WHERE d.device_id = ?"
            params.append(device_id)
        rows = await self.query(sql + " ORDER BY d.device_id", params)
        return [
            DeviceStatus(
                device_id=str(d),
                type=str(t),
                name=_str(name),
                resident_id=_str(rid),
                building=_str(b),
                unit=_str(u),
                room=_str(room),
                last_seen=as_instant(seen),
                battery=None if battery is None else int(battery),
                online=bool(online),
                rssi=None if rssi is None else float(rssi),
            )
            for d, t, name, rid, b, u, room, seen, battery, online, rssi in rows
        ]

    async def unreached_alerts(self, alert_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(alert_ids))
        for i in range(0, len(ids), _CHUNK):
            chunk = ids[i : i + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = await self.query(
                "SELECT DISTINCT alert_id FROM alert_timeline"
                f" WHERE action = 'step_unreached' AND alert_id IN ({marks})",
                chunk,
            )
            found.update(str(r[0]) for r in rows)
        return found

    async def response_samples(self, start: datetime, end: datetime) -> list[AlertResponse]:
        out = []
        for alert_id, priority, state, opened, first in await self.query(
            _RESPONSE_SQL, [start, end]
        ):
            opened_at = as_instant(opened)
            if opened_at is None:
                continue
            out.append(
                AlertResponse(
                    str(alert_id),
                    Priority(str(priority)),
                    AlertState(str(state)),
                    opened_at,
                    as_instant(first),
                )
            )
        return out

    # -- the live feed ----------------------------------------------------------------------
    async def latest_timeline_id(self) -> int:
        rows = await self.query("SELECT coalesce(max(id), 0) FROM alert_timeline")
        return int(rows[0][0])

    async def timeline_changes(self, after_id: int, limit: int) -> list[TimelineChange]:
        rows = await self.query(_CHANGES_SQL, [after_id, limit])
        return [TimelineChange(int(i), str(a), str(action)) for i, a, action in rows]
