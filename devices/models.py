"""Typed messages that travel from a codec to the store.

Every source (MQTT JSON, serial frames, zigbee2mqtt, DC-09) decodes into these, so the store,
the rules and the dispatcher never see raw payloads or dicts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

DAY_SECONDS = 86400
DEVICE_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{1,64}\Z")  # \Z: no trailing newline


class EventType(StrEnum):
    SOS = "sos"
    CANCEL = "cancel"
    FALL = "fall"
    SMOKE = "smoke"
    GAS = "gas"
    CO = "co"
    WATER_LEAK = "water_leak"
    HIGH_TEMP = "high_temp"
    DOOR_OPEN = "door_open"
    DOOR_CLOSE = "door_close"
    MOTION = "motion"
    LOW_BATTERY = "low_battery"
    TAMPER = "tamper"
    RESTORE = "restore"
    # A report a panel sent that has no SPEC meaning (an opening, a test, a code we do not
    # map): stored with its raw code, never an alert. Not accepted on the native topics.
    OTHER = "other"


# SPEC (Intake): alarms go the event path, fair between devices and ahead of readings,
# whatever transport brought them.
ALARM_EVENTS = frozenset(
    {
        EventType.SOS,
        EventType.FALL,
        EventType.SMOKE,
        EventType.GAS,
        EventType.CO,
        EventType.WATER_LEAK,
        EventType.HIGH_TEMP,
        EventType.TAMPER,
    }
)


class DeviceType(StrEnum):
    SOS_BUTTON = "sos_button"
    PENDANT = "pendant"
    SMOKE_DETECTOR = "smoke_detector"
    GAS_DETECTOR = "gas_detector"
    CO_DETECTOR = "co_detector"
    WATER_SENSOR = "water_sensor"
    DOOR_CONTACT = "door_contact"
    MOTION_SENSOR = "motion_sensor"
    TEMP_HUMIDITY = "temp_humidity"
    HEALTH_BAND = "health_band"


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class Event:
    """One device event (a press, an alarm, a restore).

    ``dedup_key`` is what makes a redelivery harmless: the device's own ``id`` if it sent one,
    else its ``seq`` within the UTC day of ``ts`` (SPEC), or within a shorter ``seq_window``
    for sources whose counters restart (a serial caller that reboots counts from 1 again: a
    whole-day window would swallow its next press); ``None`` when the device sent neither.
    """

    device_id: str
    type: EventType
    ts: datetime
    received_at: datetime
    event_id: str | None = None
    seq: int | None = None
    battery: int | None = None
    source: str = "mqtt"
    payload: str = "{}"
    seq_window: int = DAY_SECONDS
    # A broker's retained copy of an old event (delivered at subscribe time): stored once,
    # never a new alert.
    replay: bool = False

    @property
    def dedup_key(self) -> str | None:
        if self.event_id is not None:
            return f"id:{self.event_id}"
        if self.seq is None:
            return None
        if self.seq_window == DAY_SECONDS:
            return f"seq:{self.seq}:{self.ts.date().isoformat()}"
        # Windows are aligned on the epoch: a retransmission that straddles a boundary is
        # stored twice and joins the same alert as a repeat, which is harmless.
        bucket = int(self.ts.timestamp()) // self.seq_window
        return f"seq:{self.seq}:w{self.seq_window}:{bucket}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One metric value at one instant; unique by (device, metric, ts)."""

    device_id: str
    metric: str
    ts: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Telemetry:
    device_id: str
    ts: datetime
    received_at: datetime
    readings: tuple[Reading, ...]
    seq: int | None = None
    source: str = "mqtt"


@dataclass(frozen=True, slots=True)
class Status:
    """Online/offline from a device's retained status or its will."""

    device_id: str
    state: DeviceState
    ts: datetime
    fw: str | None = None
    battery: int | None = None
    source: str = "mqtt"


@dataclass(frozen=True, slots=True)
class PendingSighting:
    """A message from a device the registry does not know: kept aside for adoption."""

    device_id: str
    ts: datetime
    kind: str
    payload: str
    event_type: EventType | None = None


DeviceMessage = Event | Telemetry | Status


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    """The per-device summary a batch leaves behind (last seen, battery, online)."""

    device_id: str
    last_seen: datetime
    battery: int | None = None
    online: bool | None = None
    fw: str | None = None
    rssi: float | None = None
