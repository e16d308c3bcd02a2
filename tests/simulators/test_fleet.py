"""The simulated fleet on a real broker: retained status, wills on power loss, both formats."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.models import DeviceType, EventType
from simulators.fleet import (
    DeviceSpec,
    Fleet,
    FleetOptions,
    devices_csv,
    synthetic_devices,
)
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for


@dataclass
class Sniffer:
    """Everything published under ``scgw/#`` and ``zigbee2mqtt/#``, retained flag included."""

    client: mqtt.Client
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: list[tuple[str, dict[str, object], bool]] = field(default_factory=list)

    def on(self, topic: str) -> list[dict[str, object]]:
        with self.lock:
            return [body for t, body, _ in self.seen if t == topic]

    def count(self, suffix: str) -> int:
        with self.lock:
            return sum(1 for t, _, _ in self.seen if t.endswith(suffix))


@pytest.fixture
def sniffer(mosquitto: MosquittoServer) -> Iterator[Sniffer]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sniffer")
    sniff = Sniffer(client)
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with sniff.lock:
            sniff.seen.append((msg.topic, orjson.loads(msg.payload), bool(msg.retain)))

    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe([("scgw/#", 1), ("zigbee2mqtt/#", 1)])
    client.loop_start()
    assert subscribed.wait(10)
    yield sniff
    client.disconnect()
    client.loop_stop()


SPECS = [
    DeviceSpec("btn-1", DeviceType.SOS_BUTTON, building="1"),
    DeviceSpec("smoke-1", DeviceType.SMOKE_DETECTOR, building="1"),
    DeviceSpec("th-1", DeviceType.TEMP_HUMIDITY, building="1"),
    DeviceSpec("water-1", DeviceType.WATER_SENSOR, zigbee_name="water_1", building="1"),
    DeviceSpec("door-1", DeviceType.DOOR_CONTACT, zigbee_name="hall/door_1", building="1"),
]


async def test_fleet_publishes_both_formats_and_wills_on_power_loss(
    mosquitto: MosquittoServer, sniffer: Sniffer
) -> None:
    fleet = Fleet(
        mosquitto.url,
        SPECS,
        FleetOptions(heartbeat=0.2, events=False),
        rng=random.Random(3),
    )
    task = asyncio.create_task(fleet.run())
    try:
        await wait_for(lambda: fleet.stats().connected == 2, timeout=10, message="connected")
        assert fleet.stats().own_connections == 1  # the button; the rest share one connection
        await wait_for(
            lambda: sniffer.count("/telemetry") >= 6 and len(sniffer.on("zigbee2mqtt/water_1")),
            timeout=10,
            message="heartbeats in both formats",
        )
        status = sniffer.on("scgw/btn-1/status")[0]
        assert status["state"] == "online"
        assert sniffer.on("zigbee2mqtt/hall/door_1/availability")[0] == {"state": "online"}
        reading = sniffer.on("scgw/th-1/telemetry")[-1]["metrics"]
        assert isinstance(reading, dict)
        assert {"temperature", "humidity", "battery", "rssi"} <= set(reading)
        water = sniffer.on("zigbee2mqtt/water_1")[-1]
        assert water["water_leak"] is False
        assert {"battery", "linkquality"} <= set(water)

        # Events in each device's own format.
        fleet.event("smoke-1", EventType.SMOKE)
        fleet.event("water-1", EventType.WATER_LEAK)
        fleet.event("door-1", EventType.DOOR_OPEN)
        await wait_for(
            lambda: (
                sniffer.on("scgw/smoke-1/event")
                and any(m.get("water_leak") is True for m in sniffer.on("zigbee2mqtt/water_1"))
                and any(m.get("contact") is False for m in sniffer.on("zigbee2mqtt/hall/door_1"))
            ),
            timeout=10,
            message="events",
        )
        assert sniffer.on("scgw/smoke-1/event")[0]["type"] == "smoke"

        # Power cut: the button's will (broker), the bridge's availability, the rest silent.
        fleet.power_off(["btn-1", "door-1", "smoke-1"])
        await wait_for(
            lambda: (
                {"state": "offline"} in sniffer.on("scgw/btn-1/status")
                and {"state": "offline"} in sniffer.on("zigbee2mqtt/hall/door_1/availability")
            ),
            timeout=10,
            message="will and availability",
        )
        assert {"state": "offline"} not in sniffer.on("scgw/smoke-1/status")
        before = len(sniffer.on("scgw/smoke-1/telemetry"))
        await wait_for(
            lambda: len(sniffer.on("scgw/th-1/telemetry")) >= 3 + before,
            timeout=10,
            message="others keep beating",
        )
        assert len(sniffer.on("scgw/smoke-1/telemetry")) == before

        fleet.power_on(["btn-1"])
        await wait_for(
            lambda: (
                sniffer.on("scgw/btn-1/status")[-1]
                == {"state": "online", "fw": "1.0.0", "battery": 100}
            ),
            timeout=15,
            message="reconnected and announced",
        )
    finally:
        task.cancel()
        await fleet.stop()
    stats = fleet.stats()
    assert stats.sent > 0
    assert stats.acked == stats.sent  # every QoS 1 publish was acknowledged


async def test_clean_stop_publishes_no_will(mosquitto: MosquittoServer, sniffer: Sniffer) -> None:
    fleet = Fleet(mosquitto.url, SPECS[:1], FleetOptions(heartbeat=5, events=False))
    await fleet.start()
    await wait_for(lambda: sniffer.on("scgw/btn-1/status"), timeout=10, message="online")
    await fleet.stop()
    # A marker published after the stop: once it is seen, a will would have been seen too.
    probe = mqtt.Client(CallbackAPIVersion.VERSION2)
    probe.connect("127.0.0.1", mosquitto.port)
    probe.loop_start()
    probe.publish("scgw/marker/status", b'{"state":"online"}', qos=1).wait_for_publish(10)
    await wait_for(lambda: sniffer.on("scgw/marker/status"), timeout=10, message="marker")
    probe.disconnect()
    probe.loop_stop()
    assert [m["state"] for m in sniffer.on("scgw/btn-1/status")] == ["online"]


def test_synthetic_fleet_has_every_type_and_a_zigbee_share() -> None:
    specs = synthetic_devices(200, zigbee_share=0.3)
    assert len({s.device_id for s in specs}) == 200
    assert {s.type for s in specs} == set(DeviceType)
    zigbee = [s for s in specs if s.zigbee]
    assert 10 < len(zigbee) < 100
    assert all(s.type is not DeviceType.HEALTH_BAND for s in zigbee)
    sheet = devices_csv(specs).splitlines()
    assert sheet[0].startswith("device_id,type,")
    assert len(sheet) == 201
    assert synthetic_devices(3) == synthetic_devices(3)  # seeded: the same sheet every run
