"""zigbee2mqtt: real Zigbee sensors and SOS buttons as SPEC events, readings and statuses.

zigbee2mqtt publishes each device's whole (cached) state on ``{prefix}/{friendly_name}`` every
time any attribute changes, e.g. a Heiman smoke detector::

    {"battery":100,"battery_low":false,"smoke":true,"tamper":false,"linkquality":120}

so an alarm key stays ``true`` in every message while the alarm lasts. Events are therefore
edges, detected against the last state seen per friendly name (kept in memory):

* ``smoke gas water_leak carbon_monoxide sos tamper battery_low``: ``true`` (alarm) when the
  last state was not ``true`` → the SPEC event; ``false`` after ``true`` → ``restore``.
  The state starts empty at every start, so an alarm still ``true`` in the first message
  after a restart is an event again — a smoke alarm is never missed because the gateway
  restarted; a repeat of an active alarm only joins its alert.
* ``contact``: ``true`` means closed (zigbee2mqtt polarity; Tasmota's is the opposite, which
  is why polarity belongs to the codec). A change gives ``door_close`` / ``door_open``; the
  first value seen only sets the state (a restart must not report every door).
* ``action`` ``emergency | sos | panic`` (SOS buttons) → ``sos`` on every message: a press is
  not a state, and zigbee2mqtt does not cache ``action``.
* ``battery`` %, ``linkquality`` (0–255), ``temperature``, ``humidity`` → readings.
* ``{prefix}/{friendly_name}/availability`` (``online``/``offline`` or
  ``{"state": "online"}``) → status. ``{prefix}/bridge/...`` and ``/set`` ``/get`` command
  topics are ignored.

Friendly names may contain ``/`` (zigbee2mqtt allows ``room/device``), hence the ``#``
subscription. A key of the wrong type is skipped and reported as a problem; the rest of the
message is still used. The raw payload is kept in each event.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from datetime import datetime
from typing import Any

import orjson

from devices.codec import Rejected, RejectReason
from devices.codecs import Decoded, DeviceAddress
from devices.models import DeviceMessage, DeviceState, Event, EventType, Reading, Status, Telemetry

SOURCE = "zigbee2mqtt"
DEFAULT_PREFIX = "zigbee2mqtt"
MAX_PAYLOAD = 16 * 1024
MAX_DEVICES = 10_000  # state kept per friendly name; a flood of invented names cannot grow it

ALARM_KEYS: dict[str, EventType] = {
    "smoke": EventType.SMOKE,
    "gas": EventType.GAS,
    "water_leak": EventType.WATER_LEAK,
    "carbon_monoxide": EventType.CO,
    "sos": EventType.SOS,
    "tamper": EventType.TAMPER,
    "battery_low": EventType.LOW_BATTERY,
}
SOS_ACTIONS = frozenset({"emergency", "sos", "panic"})
# zigbee2mqtt key → metric name (ranges are checked so a broken sensor stores nothing absurd)
READINGS: dict[str, tuple[str, float, float]] = {
    "battery": ("battery", 0.0, 100.0),
    "linkquality": ("linkquality", 0.0, 255.0),
    "temperature": ("temperature", -60.0, 150.0),
    "humidity": ("humidity", 0.0, 100.0),
}
IGNORED_LAST_LEVEL = frozenset({"set", "get"})


class Zigbee2MqttCodec:
    """A ``TopicCodec``; holds the last alarm/contact state per friendly name."""

    name = SOURCE

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = prefix
        self._state: OrderedDict[str, dict[str, bool]] = OrderedDict()

    def subscriptions(self) -> list[str]:
        return [f"{self.prefix}/#"]

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Decoded | None:
        parts = topic.split("/")
        if len(parts) < 2 or parts[0] != self.prefix or parts[1] == "bridge":
            return None
        if parts[-1] in IGNORED_LAST_LEVEL:
            return None
        if len(payload) > MAX_PAYLOAD:
            raise Rejected(RejectReason.OVERSIZE, f"{len(payload)} bytes > limit {MAX_PAYLOAD}")
        if parts[-1] == "availability" and len(parts) > 2:
            return self._availability("/".join(parts[1:-1]), payload, received_at)
        name = "/".join(parts[1:])
        if not name or "" in parts[1:]:
            raise Rejected(RejectReason.BAD_TOPIC, f"no friendly name in {topic[:128]!r}")
        return self._state_message(name, payload, received_at)

    # -- availability ---------------------------------------------------------------------
    def _availability(self, name: str, payload: bytes, received_at: datetime) -> Decoded:
        where = DeviceAddress(SOURCE, (name,))
        text = payload.strip()
        state: Any = text.decode("utf-8", "replace")
        if text.startswith(b"{"):
            data = _load(payload)
            state = data.get("state") if isinstance(data, dict) else None
        if state not in ("online", "offline"):
            raise Rejected(RejectReason.INVALID_PAYLOAD, f"availability {text[:40]!r}")
        status = Status(where.pending_id(), DeviceState(state), received_at, source=SOURCE)
        return Decoded(where, (status,), payload.decode("utf-8", "replace"))

    # -- device state ---------------------------------------------------------------------
    def _state_message(self, name: str, payload: bytes, received_at: datetime) -> Decoded:
        data = _load(payload)
        if not isinstance(data, dict):
            raise Rejected(RejectReason.INVALID_PAYLOAD, "payload is not a JSON object")
        where = DeviceAddress(SOURCE, (name,))
        device_id = where.pending_id()
        raw = payload.decode("utf-8")
        problems: list[str] = []
        messages: list[DeviceMessage] = []

        battery = data.get("battery")
        if isinstance(battery, bool) or not isinstance(battery, int) or not 0 <= battery <= 100:
            battery = None
        # zigbee2mqtt's optional ``last_seen`` makes a redelivered message recognisable.
        seen = data.get("last_seen")
        stamp = (
            str(seen)[:40] if isinstance(seen, str | int) and not isinstance(seen, bool) else None
        )

        def event(kind: EventType, key: str) -> None:
            messages.append(
                Event(
                    device_id,
                    kind,
                    received_at,
                    received_at,
                    event_id=f"z2m-{device_id}-{key}-{stamp}" if stamp else None,
                    battery=battery,
                    source=SOURCE,
                    payload=raw,
                )
            )

        state = self._remember(name)
        for key, kind in ALARM_KEYS.items():
            if key not in data:
                continue
            value = data[key]
            if not isinstance(value, bool):
                problems.append(f"{key} is {type(value).__name__}, not true/false")
                continue
            before = state.get(key)
            state[key] = value
            if value and before is not True:
                event(kind, key)
            elif not value and before is True:
                event(EventType.RESTORE, key)

        if "contact" in data:
            closed = data["contact"]
            if isinstance(closed, bool):
                before = state.get("contact")
                state["contact"] = closed
                if before is not None and before != closed:
                    event(EventType.DOOR_CLOSE if closed else EventType.DOOR_OPEN, "contact")
            else:
                problems.append(f"contact is {type(closed).__name__}, not true/false")

        if "occupancy" in data:
            occupied = data["occupancy"]
            if occupied is True:
                # Someone moved: the activity the welfare check looks for (every detection,
                # not only the first, is a sign of life).
                event(EventType.MOTION, "occupancy")
            elif not isinstance(occupied, bool):
                problems.append(f"occupancy is {type(occupied).__name__}, not true/false")

        action = data.get("action")
        if isinstance(action, str) and action.lower() in SOS_ACTIONS:
            event(EventType.SOS, "action")
        elif action is not None and not isinstance(action, str):
            problems.append(f"action is {type(action).__name__}, not text")

        readings = []
        for key, (metric, low, high) in READINGS.items():
            if key not in data or data[key] is None:
                continue
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                problems.append(f"{key} is {type(value).__name__}, not a number")
            elif not math.isfinite(value) or not low <= value <= high:
                problems.append(f"{key} {value!r} out of range")
            else:
                readings.append(Reading(device_id, metric, received_at, float(value)))
        if readings:
            messages.append(
                Telemetry(device_id, received_at, received_at, tuple(readings), None, SOURCE)
            )
        if not messages and problems:
            raise Rejected(RejectReason.INVALID_PAYLOAD, "; ".join(problems))
        return Decoded(where, tuple(messages), raw, tuple(problems))

    def _remember(self, name: str) -> dict[str, bool]:
        state = self._state.get(name)
        if state is None:
            state = self._state[name] = {}
            while len(self._state) > MAX_DEVICES:
                self._state.popitem(last=False)
        else:
            self._state.move_to_end(name)
        return state


def _load(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise Rejected(RejectReason.MALFORMED_JSON, str(exc)[:160]) from None
