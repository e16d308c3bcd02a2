"""zigbee2mqtt end to end: real devices' payloads through a real mosquitto into the store (both
backends) and onto the event bus, on the zigbee2mqtt lane's own connection."""

from __future__ import annotations

from typing import Any

import pytest

from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.config import ConfigError, load_settings
from tests.gateway.conftest import Publisher, gateway_settings, register
from tests.gateway.recording import Recorder, register_records
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

HEIMAN_SMOKE = {"battery": 100, "battery_low": False, "smoke": True, "tamper": False}
AQARA_LEAK = {"battery": 97, "battery_low": False, "linkquality": 87, "water_leak": True}
AQARA_DOOR = {"battery": 100, "contact": True, "device_temperature": 23, "linkquality": 72}
HEIMAN_SOS = {"action": "emergency", "battery": 95, "linkquality": 120}


async def registered(db_url: str) -> None:
    await register_records(
        db_url,
        [
            DeviceRecord("kitchen-smoke", DeviceType.SMOKE_DETECTOR, zigbee_name="kitchen_smoke"),
            DeviceRecord("bath-leak", DeviceType.WATER_SENSOR, zigbee_name="floor1/bath_leak"),
            DeviceRecord("front-door", DeviceType.DOOR_CONTACT, zigbee_name="front_door"),
            DeviceRecord("sos-1", DeviceType.SOS_BUTTON, zigbee_name="sos_button_1"),
            DeviceRecord("kitchen-th", DeviceType.TEMP_HUMIDITY, zigbee_name="kitchen_th"),
        ],
    )


async def start(
    start_gateway: Any, mosquitto: MosquittoServer, db_url: str
) -> tuple[Any, Recorder]:
    gw = await start_gateway(gateway_settings(mosquitto, db_url))
    recorder = Recorder()
    gw.gateway.consequences.listen(recorder)
    return gw, recorder


async def events_of(gw: Any, device_id: str) -> list[str]:
    rows = await gw.store.query(
        "SELECT type FROM v_events WHERE device_id = ? ORDER BY time", (device_id,)
    )
    return [r[0] for r in rows]


async def test_real_device_payloads_become_events(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway: Any
) -> None:
    await registered(db_url)
    gw, recorder = await start(start_gateway, mosquitto, db_url)
    assert "zigbee2mqtt" in [lane.name for lane in gw.gateway.parts.lanes]

    publisher.json("zigbee2mqtt/kitchen_smoke", {**HEIMAN_SMOKE, "linkquality": 120})
    publisher.json("zigbee2mqtt/kitchen_smoke", {**HEIMAN_SMOKE, "linkquality": 118})  # cached
    publisher.json("zigbee2mqtt/floor1/bath_leak", AQARA_LEAK)
    publisher.json("zigbee2mqtt/front_door", AQARA_DOOR)  # first value: state only
    publisher.json("zigbee2mqtt/front_door", {**AQARA_DOOR, "contact": False})
    publisher.json("zigbee2mqtt/sos_button_1", HEIMAN_SOS)
    publisher.json("zigbee2mqtt/kitchen_smoke", {**HEIMAN_SMOKE, "smoke": False})
    publisher.raw("zigbee2mqtt/front_door/availability", b'{"state":"offline"}')
    publisher.raw("zigbee2mqtt/bridge/state", b'{"state":"online"}')
    for temperature in (61.5, 62.0):  # twice: the threshold is debounced
        publisher.json("zigbee2mqtt/kitchen_th", {"temperature": temperature, "humidity": 20})
    await publisher.flushed()

    await wait_for(lambda: len(recorder.seen) >= 5, timeout=10, message="five events on the bus")
    assert recorder.of("kitchen-smoke") == [("smoke", False), ("restore", False)]
    assert recorder.of("bath-leak") == [("water_leak", False)]
    assert recorder.of("front-door") == [("door_open", False)]
    assert recorder.of("sos-1") == [("sos", False)]
    assert await events_of(gw, "kitchen-smoke") == ["smoke", "restore"]
    assert await events_of(gw, "bath-leak") == ["water_leak"]
    assert await events_of(gw, "front-door") == ["door_open"]
    assert await events_of(gw, "sos-1") == ["sos"]
    payload = await gw.store.query("SELECT payload FROM v_events WHERE device_id = 'sos-1'")
    assert '"emergency"' in str(payload[0][0])  # the raw payload is kept

    async def door_offline() -> bool:
        rows = await gw.store.query("SELECT online FROM v_devices WHERE device_id = 'front-door'")
        return bool(rows) and rows[0][0] is not None and not rows[0][0]

    await wait_for(door_offline, timeout=10, message="front door offline")
    readings = await gw.store.query(
        "SELECT metric, value FROM v_readings WHERE device_id = 'bath-leak' ORDER BY metric"
    )
    assert readings == [("battery", 97.0), ("linkquality", 87.0)]
    battery = await gw.store.query("SELECT battery FROM v_devices WHERE device_id = 'sos-1'")
    assert battery == [(95,)]

    # The alert engine took them like any other source's (thresholds included).
    async def alerts() -> list[tuple[str, str, str]]:
        rows = await gw.store.query("SELECT device_id, kind, priority FROM v_alerts")
        return sorted((str(d), str(k), str(p)) for d, k, p in rows)

    expected = [
        ("bath-leak", "water_leak", "P2"),
        ("kitchen-smoke", "smoke", "P1"),
        ("kitchen-th", "high_temp", "P2"),
        ("sos-1", "sos", "P1"),
    ]
    await wait_for(lambda: _eq(alerts(), expected), timeout=10, message="alerts opened")
    assert gw.metric("scgw_messages_received_total", lane="zigbee2mqtt") == 11


async def _eq(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_bad_payloads_are_counted_and_alarms_still_pass(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway: Any
) -> None:
    await registered(db_url)
    await register(db_url, ["btn-1"])
    gw, recorder = await start(start_gateway, mosquitto, db_url)

    publisher.raw("zigbee2mqtt/kitchen_smoke", b"{not json")
    publisher.raw("zigbee2mqtt/kitchen_smoke", b"[true]")
    publisher.json("zigbee2mqtt/kitchen_smoke", {"smoke": "yes"})  # wrong type, nothing else
    publisher.json("zigbee2mqtt/front_door", {"contact": 1, "battery": 100})  # one key wrong
    publisher.raw("zigbee2mqtt/front_door/availability", b"sometimes")
    publisher.raw("zigbee2mqtt/sos_button_1", b'{"pad":"' + b"x" * 40000 + b'"}')
    publisher.json("zigbee2mqtt/garage_smoke", HEIMAN_SMOKE)  # not in the registry
    publisher.json("scgw/btn-1/event", {"id": "n-1", "type": "sos"})  # the native lane
    publisher.json("zigbee2mqtt/kitchen_smoke", HEIMAN_SMOKE)  # a real alarm after all that
    await publisher.flushed()

    await wait_for(
        lambda: recorder.of("kitchen-smoke") == [("smoke", False)],
        timeout=10,
        message="the smoke alarm after the bad input",
    )
    await wait_for(
        lambda: recorder.of("btn-1") == [("sos", False)], timeout=10, message="native press"
    )

    def rejected(reason: str) -> float:
        return gw.metric("scgw_messages_rejected_total", lane="zigbee2mqtt", reason=reason)

    await wait_for(gw.store.pending_devices, timeout=10, message="stranger kept aside")
    assert rejected("unknown_device") == 1
    assert rejected("malformed_json") == 1
    assert rejected("invalid_payload") == 4  # [true], "yes", contact 1, "sometimes"
    assert rejected("oversize") == 1
    pending = await gw.store.pending_devices()
    assert [(p.device_id, p.sos_count) for p in pending] == [("zigbee2mqtt-garage_smoke", 0)]
    # The valid part of a half-bad message is kept (the reading takes the bulk path).
    await wait_for(
        lambda: _eq(
            gw.store.query("SELECT metric FROM v_readings WHERE device_id = 'front-door'"),
            [("battery",)],
        ),
        timeout=10,
        message="front door's battery stored",
    )
    assert all(t.restarts == 0 for t in gw.gateway.tasks.values())


async def test_a_restart_reports_a_smoke_alarm_still_on(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway: Any
) -> None:
    await registered(db_url)
    gw, recorder = await start(start_gateway, mosquitto, db_url)
    publisher.json("zigbee2mqtt/kitchen_smoke", HEIMAN_SMOKE)
    await wait_for(
        lambda: gw.metric("scgw_ack_lag_seconds_count", lane="zigbee2mqtt"),
        timeout=10,
        message="first alarm stored and acked",
    )
    assert recorder.of("kitchen-smoke") == [("smoke", False)]
    gw.gateway.request_stop()
    await gw.task

    gw2, recorder2 = await start(start_gateway, mosquitto, db_url)
    publisher.json("zigbee2mqtt/kitchen_smoke", {**HEIMAN_SMOKE, "battery": 99})
    await wait_for(
        lambda: recorder2.of("kitchen-smoke") == [("smoke", False)],
        timeout=10,
        message="the alarm still on is an event again after the restart",
    )
    assert await events_of(gw2, "kitchen-smoke") == ["smoke", "smoke"]


def test_zigbee_config() -> None:
    assert load_settings(None).zigbee2mqtt.enabled
    assert load_settings(None).zigbee2mqtt.prefix == "zigbee2mqtt"
    with pytest.raises(ConfigError, match=r"key zigbee2mqtt\.prefix"):
        load_settings(None, zigbee2mqtt={"prefix": "z2m/#"})


async def test_disabled_means_no_lane(
    mosquitto: MosquittoServer, db_url: str, start_gateway: Any
) -> None:
    gw = await start_gateway(gateway_settings(mosquitto, db_url, zigbee2mqtt={"enabled": False}))
    assert [lane.name for lane in gw.gateway.parts.lanes] == ["event", "telemetry"]
