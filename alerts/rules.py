"""What an event means for alerts: open one (with which priority), cancel, restore, or nothing.

Pure functions over typed messages; the engine applies the decision to the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.models import Priority
from devices.models import Event, EventType

EVENT_PRIORITY: dict[EventType, Priority] = {
    EventType.SOS: Priority.P1,
    EventType.FALL: Priority.P1,
    EventType.SMOKE: Priority.P1,
    EventType.GAS: Priority.P1,
    EventType.CO: Priority.P1,
    EventType.WATER_LEAK: Priority.P2,
    EventType.HIGH_TEMP: Priority.P2,
    EventType.LOW_BATTERY: Priority.P3,
    EventType.TAMPER: Priority.P3,
}

# Alerts a resident's own "cancel" may withdraw (within the grace period).
CANCELLABLE_BY_RESIDENT: frozenset[str] = frozenset({EventType.SOS.value, EventType.FALL.value})

# Alerts a sensor's "restore" refers to.
RESTORABLE: frozenset[str] = frozenset(
    {
        EventType.SMOKE.value,
        EventType.GAS.value,
        EventType.CO.value,
        EventType.WATER_LEAK.value,
        EventType.HIGH_TEMP.value,
        EventType.TAMPER.value,
        EventType.LOW_BATTERY.value,
    }
)


@dataclass(frozen=True, slots=True)
class OpenAlert:
    kind: str
    priority: Priority


@dataclass(frozen=True, slots=True)
class CancelAlerts:
    """The resident withdrew their call."""


@dataclass(frozen=True, slots=True)
class RestoreAlerts:
    """The sensor reports the condition is gone."""


@dataclass(frozen=True, slots=True)
class NoAlert:
    """Activity (motion, doors) or nothing alert-worthy."""


Decision = OpenAlert | CancelAlerts | RestoreAlerts | NoAlert


def classify(event: Event) -> Decision:
    priority = EVENT_PRIORITY.get(event.type)
    if priority is not None:
        return OpenAlert(event.type.value, priority)
    if event.type is EventType.CANCEL:
        return CancelAlerts()
    if event.type is EventType.RESTORE:
        return RestoreAlerts()
    return NoAlert()
