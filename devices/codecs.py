"""How a device format plugs into the gateway: one codec module plus its tests.

Every source turns its input into the typed messages of ``devices.models`` (``Event``,
``Telemetry``, ``Status``) or a counted rejection (``devices.codec.Rejected``). What differs is
how a device is named on the wire, so a codec never looks up the registry itself: it says
*where* the input came from as a ``DeviceAddress`` and builds its messages for a provisional
device id (``address.pending_id()``). The pipeline then resolves the address through the
registry (``gateway.registry.LiveRegistry``) and either binds the messages to the registered
device (``Decoded.bind``) or keeps them aside in the pending list (``Decoded.sightings``).

Two shapes of codec exist:

* **Topic codecs** (MQTT dialects such as zigbee2mqtt) implement ``TopicCodec``: topic and
  payload of one message in, a ``Decoded`` (or ``None`` for a topic that is not for us) out.
  ``TOPIC_CODECS`` lists them; ``gateway/ingest/zigbee.py`` runs any of them on its own MQTT
  lane with manual acks.
* **Stream codecs** (the serial frame of SPEC, SIA DC-09) own their framing: an incremental
  framer with ``feed(bytes) -> list[frame | Skipped]`` that survives garbage, split and
  concatenated input, plus a function from a frame to a ``Decoded``. Their transports live in
  ``gateway/serial`` and ``gateway/sia``.

Adding a format: write ``devices/<format>.py`` with the codec (pure functions and frozen
dataclasses, no I/O), register a topic codec in ``TOPIC_CODECS``, and add
``tests/devices/test_<format>.py`` with golden examples and a hypothesis fuzz test (arbitrary
bytes never raise anything but ``Rejected``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from devices.models import (
    ALARM_EVENTS,
    DEVICE_ID_RE,
    DeviceMessage,
    Event,
    PendingSighting,
    Telemetry,
)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
NATIVE_SOURCE = "mqtt"  # the native topics: the device id is in the topic
RETAINED = "retained"  # Decoded flag: a broker's retained copy, a replay of old state


@dataclass(frozen=True, slots=True)
class DeviceAddress:
    """How a device is named by its source: ``("serial", ("bus1", "0x0000ABCD"))``,
    ``("zigbee2mqtt", ("kitchen_smoke",))``, ``("sia", ("1234", "15"))``."""

    source: str
    key: tuple[str, ...]

    def pending_id(self) -> str:
        """A valid device id for the pending list, stable for the same address.

        Technicians adopt a pending device by registering its address (serial port and
        address, zigbee name, SIA account and zone); this id only has to be unique and
        readable. Unsafe characters become ``_`` and a short hash keeps such ids distinct.
        A native MQTT device names itself: its id is its address.
        """
        if self.source == NATIVE_SOURCE and len(self.key) == 1 and DEVICE_ID_RE.match(self.key[0]):
            return self.key[0]
        text = "-".join((self.source, *self.key))
        safe = _UNSAFE.sub("_", text)
        if safe != text or len(safe) > 64:
            digest = hashlib.sha1(text.encode("utf-8", "replace")).hexdigest()[:8]
            safe = f"{safe[:55]}-{digest}"
        assert DEVICE_ID_RE.match(safe)
        return safe


def rebind(message: DeviceMessage, device_id: str) -> DeviceMessage:
    """The same message for another device id (readings included)."""
    if isinstance(message, Telemetry):
        readings = tuple(dataclasses.replace(r, device_id=device_id) for r in message.readings)
        return dataclasses.replace(message, device_id=device_id, readings=readings)
    return dataclasses.replace(message, device_id=device_id)


@dataclass(frozen=True, slots=True)
class Decoded:
    """What a codec made of one input.

    ``messages`` carry ``address.pending_id()`` as their device id until bound. ``problems``
    lists parts of the input that were ignored (a key of the wrong type, an unknown metric):
    the usable rest is kept, and the pipeline counts and logs the problems.
    """

    address: DeviceAddress
    messages: tuple[DeviceMessage, ...]
    raw: str | bytes  # bytes: the payload as received, decoded only if a sighting needs it
    problems: tuple[str, ...] = ()  # parts of the input dropped (counted as rejections)
    flags: tuple[str, ...] = ()  # what was corrected and kept (clock_ahead, nul_removed)

    @property
    def has_event(self) -> bool:
        return any(type(m) is Event for m in self.messages)

    @property
    def alarm(self) -> bool:
        """Carries an alarm event (SPEC: these take the event path ahead of everything)."""
        return any(type(m) is Event and m.type in ALARM_EVENTS for m in self.messages)

    def bind(self, device_id: str) -> tuple[DeviceMessage, ...]:
        if device_id == self.address.pending_id():
            return self.messages  # built for this id already (native topics)
        return tuple(rebind(m, device_id) for m in self.messages)

    def sightings(self) -> list[PendingSighting]:
        """The pending-list entries of an unregistered device (one per message)."""
        out: list[PendingSighting] = []
        raw = self.raw if isinstance(self.raw, str) else self.raw.decode("utf-8", "replace")
        raw = raw[:4096]
        for message in self.messages:
            if isinstance(message, Event):
                kind, event_type = "event", message.type
            elif isinstance(message, Telemetry):
                kind, event_type = "telemetry", None
            else:
                kind, event_type = "status", None
            out.append(PendingSighting(message.device_id, message.ts, kind, raw, event_type))
        return out


@dataclass(frozen=True, slots=True)
class Skipped:
    """Bytes a stream framer threw away, and why (a metrics label)."""

    reason: str
    data: bytes


class TopicCodec(Protocol):
    """An MQTT dialect: one message in, ``Decoded`` out.

    ``None`` means "not a device message" (a bridge or command topic): acked and ignored.
    Anything malformed raises ``Rejected``. A codec may keep per-device state (zigbee2mqtt's
    edge detection); it is only ever called from one task.
    """

    name: str  # the Event.source and the metrics lane label

    def subscriptions(self) -> list[str]: ...

    def decode(self, topic: str, payload: bytes, received_at: datetime) -> Decoded | None: ...


TopicCodecFactory = Callable[[str], TopicCodec]  # called with the topic prefix


def _zigbee2mqtt(prefix: str) -> TopicCodec:
    from devices.zigbee2mqtt import Zigbee2MqttCodec

    return Zigbee2MqttCodec(prefix=prefix)


TOPIC_CODECS: dict[str, TopicCodecFactory] = {"zigbee2mqtt": _zigbee2mqtt}
