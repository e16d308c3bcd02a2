"""What the spool keeps: one record per event, per readings batch, per pending batch, per
responder reply, and per outage notification; each is JSON of the existing models.

Records are written in the order the sources produced them and replayed in that order.
``dumps``/``loads`` round-trip every field (property-tested); an unknown record kind or a
malformed body raises ``SpoolFormatError`` (the drain sets such a record aside, loudly).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, cast

import orjson

from alerts.outage import OutageNotice
from alerts.replies import Reply
from devices.models import (
    DeviceHealth,
    DeviceState,
    Event,
    EventType,
    PendingSighting,
    Reading,
    Status,
    Telemetry,
)


class SpoolFormatError(ValueError):
    """A record that cannot be decoded (unknown kind, missing or wrong fields)."""


@dataclass(frozen=True, slots=True)
class SpooledEvent:
    event: Event
    # False: the registry could not be asked while the database was away; the drain decides
    # between the events table and the pending list.
    checked: bool = True


@dataclass(frozen=True, slots=True)
class SpooledReadings:
    readings: tuple[Reading, ...] = ()
    health: tuple[DeviceHealth, ...] = ()
    # Messages of devices the registry could not be asked about (stored or pending at drain).
    unchecked: tuple[Telemetry | Status, ...] = ()


@dataclass(frozen=True, slots=True)
class SpooledPending:
    sightings: tuple[PendingSighting, ...]


@dataclass(frozen=True, slots=True)
class SpooledReply:
    reply: Reply


@dataclass(frozen=True, slots=True)
class SpooledNotice:
    notice: OutageNotice


Record: TypeAlias = SpooledEvent | SpooledReadings | SpooledPending | SpooledReply | SpooledNotice
Json: TypeAlias = dict[str, Any]


def _t(ts: datetime) -> str:
    return ts.isoformat()


def _ts(raw: object) -> datetime:
    if not isinstance(raw, str):
        raise SpoolFormatError(f"expected an ISO time, got {raw!r}")
    value = datetime.fromisoformat(raw)
    if value.utcoffset() is None:
        raise SpoolFormatError(f"naive time {raw!r}")
    return value


def _opt_ts(raw: object) -> datetime | None:
    return None if raw is None else _ts(raw)


# -- models ------------------------------------------------------------------------------------
def _event(e: Event) -> Json:
    return {
        "device_id": e.device_id,
        "type": e.type.value,
        "ts": _t(e.ts),
        "received_at": _t(e.received_at),
        "event_id": e.event_id,
        "seq": e.seq,
        "battery": e.battery,
        "source": e.source,
        "payload": e.payload,
        "seq_window": e.seq_window,
        "replay": e.replay,
    }


def _event_from(d: Mapping[str, Any]) -> Event:
    return Event(
        device_id=d["device_id"],
        type=EventType(d["type"]),
        ts=_ts(d["ts"]),
        received_at=_ts(d["received_at"]),
        event_id=d["event_id"],
        seq=d["seq"],
        battery=d["battery"],
        source=d["source"],
        payload=d["payload"],
        seq_window=d["seq_window"],
        replay=bool(d.get("replay", False)),  # records written before it existed have none
    )


def _reading(r: Reading) -> list[Any]:
    return [r.device_id, r.metric, _t(r.ts), r.value]


def _reading_from(row: Sequence[Any]) -> Reading:
    device_id, metric, ts, value = row
    return Reading(device_id, metric, _ts(ts), float(value))


def _health(h: DeviceHealth) -> Json:
    return {
        "device_id": h.device_id,
        "last_seen": _t(h.last_seen),
        "battery": h.battery,
        "online": h.online,
        "fw": h.fw,
        "rssi": h.rssi,
    }


def _health_from(d: Mapping[str, Any]) -> DeviceHealth:
    return DeviceHealth(
        device_id=d["device_id"],
        last_seen=_ts(d["last_seen"]),
        battery=d["battery"],
        online=d["online"],
        fw=d["fw"],
        rssi=d["rssi"],
    )


def _message(m: Telemetry | Status) -> Json:
    if isinstance(m, Telemetry):
        return {
            "telemetry": True,
            "device_id": m.device_id,
            "ts": _t(m.ts),
            "received_at": _t(m.received_at),
            "readings": [_reading(r) for r in m.readings],
            "seq": m.seq,
            "source": m.source,
        }
    return {
        "telemetry": False,
        "device_id": m.device_id,
        "state": m.state.value,
        "ts": _t(m.ts),
        "fw": m.fw,
        "battery": m.battery,
        "source": m.source,
    }


def _message_from(d: Mapping[str, Any]) -> Telemetry | Status:
    if d["telemetry"]:
        return Telemetry(
            device_id=d["device_id"],
            ts=_ts(d["ts"]),
            received_at=_ts(d["received_at"]),
            readings=tuple(_reading_from(r) for r in d["readings"]),
            seq=d["seq"],
            source=d["source"],
        )
    return Status(
        device_id=d["device_id"],
        state=DeviceState(d["state"]),
        ts=_ts(d["ts"]),
        fw=d["fw"],
        battery=d["battery"],
        source=d["source"],
    )


def _sighting(s: PendingSighting) -> Json:
    return {
        "device_id": s.device_id,
        "ts": _t(s.ts),
        "kind": s.kind,
        "payload": s.payload,
        "event_type": None if s.event_type is None else s.event_type.value,
    }


def _sighting_from(d: Mapping[str, Any]) -> PendingSighting:
    kind = d["event_type"]
    return PendingSighting(
        d["device_id"],
        _ts(d["ts"]),
        d["kind"],
        d["payload"],
        None if kind is None else EventType(kind),
    )


def _notice(n: OutageNotice) -> Json:
    return {
        "event_key": n.event_key,
        "alert_id": n.alert_id,
        "at": _t(n.at),
        "step": n.step,
        "targets": list(n.targets),
        "reached": n.reached,
    }


def _notice_from(d: Mapping[str, Any]) -> OutageNotice:
    return OutageNotice(
        d["event_key"],
        d["alert_id"],
        _ts(d["at"]),
        int(d["step"]),
        tuple(d["targets"]),
        int(d["reached"]),
    )


# -- records -----------------------------------------------------------------------------------
def dumps(record: Record) -> bytes:
    body: Json
    if isinstance(record, SpooledEvent):
        body = {"k": "event", "event": _event(record.event), "checked": record.checked}
    elif isinstance(record, SpooledReadings):
        body = {
            "k": "readings",
            "readings": [_reading(r) for r in record.readings],
            "health": [_health(h) for h in record.health],
            "unchecked": [_message(m) for m in record.unchecked],
        }
    elif isinstance(record, SpooledPending):
        body = {"k": "pending", "sightings": [_sighting(s) for s in record.sightings]}
    elif isinstance(record, SpooledReply):
        r = record.reply
        body = {
            "k": "reply",
            "responder_id": r.responder_id,
            "alert_id": r.alert_id,
            "action": r.action,
        }
    else:
        body = {"k": "notice", "notice": _notice(record.notice)}
    return orjson.dumps(body)


def loads(raw: bytes) -> Record:
    try:
        body = orjson.loads(raw)
        if not isinstance(body, dict):
            raise SpoolFormatError("a record is a JSON object")
        kind = body.get("k")
        if kind == "event":
            return SpooledEvent(_event_from(body["event"]), bool(body["checked"]))
        if kind == "readings":
            return SpooledReadings(
                tuple(_reading_from(r) for r in body["readings"]),
                tuple(_health_from(h) for h in body["health"]),
                tuple(_message_from(m) for m in body["unchecked"]),
            )
        if kind == "pending":
            return SpooledPending(tuple(_sighting_from(s) for s in body["sightings"]))
        if kind == "reply":
            action = body["action"]
            if action not in ("accept", "decline", "arrived", "resolve"):
                raise SpoolFormatError(f"unknown reply action {action!r}")
            return SpooledReply(Reply(body["responder_id"], body["alert_id"], cast(Any, action)))
        if kind == "notice":
            return SpooledNotice(_notice_from(body["notice"]))
        raise SpoolFormatError(f"unknown record kind {kind!r}")
    except SpoolFormatError:
        raise
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SpoolFormatError(f"bad spool record: {type(exc).__name__}: {exc}") from exc


def is_event(record: Record) -> bool:
    """Records that must never be refused for space (events, and what belongs to them)."""
    return not isinstance(record, SpooledReadings | SpooledPending)
