"""A simulated fleet: retained status, heartbeats with random-walk telemetry, battery drain and
occasional events, published as real devices do (QoS 1 uplinks)."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import orjson
import paho.mqtt.client as mqtt

from devices.models import DeviceType, EventType

# What each kind of device measures, with a starting value and a random-walk step.
METRICS: dict[DeviceType, tuple[tuple[str, float, float], ...]] = {
    DeviceType.TEMP_HUMIDITY: (("temperature", 22.0, 0.2), ("humidity", 45.0, 1.0)),
    DeviceType.GAS_DETECTOR: (("gas_ppm", 3.0, 0.5),),
    DeviceType.CO_DETECTOR: (("co_ppm", 1.0, 0.3),),
    DeviceType.HEALTH_BAND: (("heart_rate", 72.0, 2.0),),
    DeviceType.SMOKE_DETECTOR: (("temperature", 21.0, 0.1),),
}
# Occasional events per device type (the demo's "life" in the building).
EVENTS: dict[DeviceType, EventType] = {
    DeviceType.SOS_BUTTON: EventType.SOS,
    DeviceType.PENDANT: EventType.SOS,
    DeviceType.DOOR_CONTACT: EventType.DOOR_OPEN,
    DeviceType.MOTION_SENSOR: EventType.MOTION,
}


@dataclass(slots=True)
class SimDevice:
    device_id: str
    type: DeviceType
    battery: float = 100.0
    seq: int = 0
    values: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FleetOptions:
    heartbeat: float = 10.0
    # Mean seconds between events for one device; SOS is rare, motion frequent.
    sos_every: float = 1800.0
    activity_every: float = 120.0
    prefix: str = "scgw"


class Fleet:
    def __init__(
        self,
        client: mqtt.Client,
        devices: Sequence[tuple[str, DeviceType]],
        options: FleetOptions,
        rng: random.Random | None = None,
    ) -> None:
        self._client = client
        self._options = options
        self._rng = rng or random.Random()
        self.devices = [SimDevice(d, t) for d, t in devices]
        self.sent = 0

    def _publish(
        self, device: SimDevice, kind: str, body: dict[str, object], *, retain: bool = False
    ) -> None:
        topic = f"{self._options.prefix}/{device.device_id}/{kind}"
        self._client.publish(topic, orjson.dumps(body), qos=1, retain=retain)
        self.sent += 1

    def announce(self) -> None:
        for device in self.devices:
            self._publish(
                device,
                "status",
                {"state": "online", "fw": "1.0.0", "battery": round(device.battery)},
                retain=True,
            )

    def heartbeat(self, device: SimDevice) -> None:
        device.seq += 1
        device.battery = max(0.0, device.battery - self._rng.uniform(0.0, 0.02))
        metrics: dict[str, float] = {
            "battery": round(device.battery),
            "rssi": self._rng.randint(-90, -50),
        }
        for name, start, step in METRICS.get(device.type, ()):
            value = device.values.get(name, start) + self._rng.gauss(0.0, step)
            device.values[name] = value
            metrics[name] = round(value, 1)
        self._publish(device, "telemetry", {"ts": _now(), "seq": device.seq, "metrics": metrics})

    def maybe_event(self, device: SimDevice, dt: float) -> None:
        kind = EVENTS.get(device.type)
        if kind is None:
            return
        mean = self._options.sos_every if kind is EventType.SOS else self._options.activity_every
        if self._rng.random() < dt / mean:
            self.event(device, kind)

    def event(self, device: SimDevice, kind: EventType) -> None:
        device.seq += 1
        self._publish(
            device,
            "event",
            {
                "id": uuid.uuid4().hex,
                "seq": device.seq,
                "ts": _now(),
                "type": kind.value,
                "battery": round(device.battery),
            },
        )

    async def run(self) -> None:
        """Spread heartbeats evenly over the interval, forever."""
        self.announce()
        if not self.devices:
            return
        tick = self._options.heartbeat / len(self.devices)
        while True:
            for device in self.devices:
                self.heartbeat(device)
                self.maybe_event(device, self._options.heartbeat)
                await asyncio.sleep(tick)


def _now() -> str:
    return datetime.now(UTC).isoformat()
