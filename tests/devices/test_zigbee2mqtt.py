"""zigbee2mqtt payloads of real devices → SPEC events, readings and statuses."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.codec import Rejected, RejectReason
from devices.codecs import Decoded
from devices.models import DeviceState, Event, EventType, Status, Telemetry
from devices.zigbee2mqtt import Zigbee2MqttCodec

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

# What the devices publish (zigbee2mqtt's converters, with cache_state on).
HEIMAN_SMOKE = {"battery": 100, "battery_low": False, "smoke": True, "tamper": False}
AQARA_WATER = {
    "battery": 100,
    "battery_low": False,
    "device_temperature": 25,
    "linkquality": 87,
    "power_outage_count": 3,
    "tamper": False,
    "voltage": 3005,
    "water_leak": True,
}
AQARA_DOOR = {"battery": 100, "contact": True, "device_temperature": 23, "linkquality": 72}
HEIMAN_SOS = {"action": "emergency", "battery": 95, "linkquality": 120}
IAS_SOS = {"battery_low": False, "sos": True, "tamper": False, "linkquality": 90}


def decode(codec: Zigbee2MqttCodec, name: str, payload: Any) -> Decoded:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    decoded = codec.decode(f"zigbee2mqtt/{name}", raw, NOW)
    assert decoded is not None
    return decoded


def events(decoded: Decoded) -> list[EventType]:
    return [m.type for m in decoded.messages if isinstance(m, Event)]


def readings(decoded: Decoded) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in decoded.messages:
        if isinstance(m, Telemetry):
            out.update({r.metric: r.value for r in m.readings})
    return out


def test_smoke_detector_alarm_repeat_and_restore() -> None:
    codec = Zigbee2MqttCodec()
    first = decode(codec, "kitchen_smoke", {**HEIMAN_SMOKE, "linkquality": 120})
    assert events(first) == [EventType.SMOKE]  # true on the first message after a start
    (event,) = [m for m in first.messages if isinstance(m, Event)]
    assert event.battery == 100
    assert event.source == "zigbee2mqtt"
    assert orjson.loads(event.payload)["smoke"] is True  # the raw payload is kept
    assert readings(first) == {"battery": 100.0, "linkquality": 120.0}
    assert first.address.key == ("kitchen_smoke",)

    # zigbee2mqtt republishes the cached state: smoke stays true, no new event.
    assert events(decode(codec, "kitchen_smoke", {**HEIMAN_SMOKE, "linkquality": 99})) == []
    assert events(decode(codec, "kitchen_smoke", {**HEIMAN_SMOKE, "smoke": False})) == [
        EventType.RESTORE
    ]
    assert events(decode(codec, "kitchen_smoke", {**HEIMAN_SMOKE, "smoke": False})) == []
    assert events(decode(codec, "kitchen_smoke", HEIMAN_SMOKE)) == [EventType.SMOKE]


def test_a_false_first_is_no_restore() -> None:
    codec = Zigbee2MqttCodec()
    assert events(decode(codec, "s", {**HEIMAN_SMOKE, "smoke": False})) == []


def test_water_sensor() -> None:
    codec = Zigbee2MqttCodec()
    decoded = decode(codec, "bathroom_leak", AQARA_WATER)
    assert events(decoded) == [EventType.WATER_LEAK]
    assert readings(decoded) == {"battery": 100.0, "linkquality": 87.0}


def test_motion_sensor_occupancy_is_activity() -> None:
    # An Aqara/Xiaomi motion sensor (RTCGQ11LM) as zigbee2mqtt publishes it.
    motion = {"battery": 91, "illuminance": 12, "linkquality": 150, "occupancy": True}
    codec = Zigbee2MqttCodec()
    assert events(decode(codec, "hall_motion", motion)) == [EventType.MOTION]
    assert events(decode(codec, "hall_motion", motion)) == [EventType.MOTION]  # each detection
    assert events(decode(codec, "hall_motion", {**motion, "occupancy": False})) == []
    bad = decode(codec, "hall_motion", {**motion, "occupancy": "yes"})
    assert events(bad) == []
    assert any("occupancy" in p for p in bad.problems)


def test_door_contact_only_on_change() -> None:
    codec = Zigbee2MqttCodec()
    assert events(decode(codec, "front_door", AQARA_DOOR)) == []  # first value: state only
    assert events(decode(codec, "front_door", {**AQARA_DOOR, "contact": False})) == [
        EventType.DOOR_OPEN
    ]
    assert events(decode(codec, "front_door", {**AQARA_DOOR, "contact": False})) == []
    assert events(decode(codec, "front_door", AQARA_DOOR)) == [EventType.DOOR_CLOSE]


def test_sos_buttons() -> None:
    codec = Zigbee2MqttCodec()
    assert events(decode(codec, "sos_1", HEIMAN_SOS)) == [EventType.SOS]
    assert events(decode(codec, "sos_1", HEIMAN_SOS)) == [EventType.SOS]  # every press
    assert events(decode(codec, "sos_1", {**HEIMAN_SOS, "action": "single"})) == []
    assert events(decode(codec, "sos_1", {**HEIMAN_SOS, "action": "PANIC"})) == [EventType.SOS]
    assert events(decode(codec, "sos_2", IAS_SOS)) == [EventType.SOS]
    assert events(decode(codec, "sos_2", {**IAS_SOS, "sos": False})) == [EventType.RESTORE]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ({"gas": True, "battery_low": False, "tamper": False}, [EventType.GAS]),
        ({"carbon_monoxide": True, "battery": 80}, [EventType.CO]),
        ({"tamper": True}, [EventType.TAMPER]),
        ({"battery_low": True, "battery": 5}, [EventType.LOW_BATTERY]),
        ({"smoke": True, "tamper": True}, [EventType.SMOKE, EventType.TAMPER]),
    ],
)
def test_other_alarm_keys(payload: dict[str, Any], expected: list[EventType]) -> None:
    assert events(decode(Zigbee2MqttCodec(), "dev", payload)) == expected


def test_temperature_and_humidity() -> None:
    decoded = decode(Zigbee2MqttCodec(), "th", {"temperature": -3.5, "humidity": 41.2})
    assert readings(decoded) == {"temperature": -3.5, "humidity": 41.2}


def test_availability() -> None:
    codec = Zigbee2MqttCodec()
    for payload, state in [
        (b"online", DeviceState.ONLINE),
        (b"offline", DeviceState.OFFLINE),
        (b'{"state":"offline"}', DeviceState.OFFLINE),
    ]:
        decoded = codec.decode("zigbee2mqtt/front_door/availability", payload, NOW)
        assert decoded is not None
        (status,) = decoded.messages
        assert isinstance(status, Status)
        assert status.state is state
        assert decoded.address.key == ("front_door",)
    for bad in (b"maybe", b'{"state":1}', b"[]", b"{"):
        with pytest.raises(Rejected):
            codec.decode("zigbee2mqtt/front_door/availability", bad, NOW)


def test_nested_friendly_names_and_ignored_topics() -> None:
    codec = Zigbee2MqttCodec()
    decoded = codec.decode("zigbee2mqtt/floor1/kitchen/smoke", orjson.dumps(HEIMAN_SMOKE), NOW)
    assert decoded is not None
    assert decoded.address.key == ("floor1/kitchen/smoke",)
    for topic in (
        "zigbee2mqtt/bridge/state",
        "zigbee2mqtt/bridge/devices",
        "zigbee2mqtt/kitchen_smoke/set",
        "zigbee2mqtt/kitchen_smoke/get",
        "other/kitchen_smoke",
    ):
        assert codec.decode(topic, b"{}", NOW) is None


def test_last_seen_makes_redelivery_recognisable() -> None:
    payload = {**HEIMAN_SMOKE, "last_seen": "2026-11-27T08:00:01.123Z"}
    first = decode(Zigbee2MqttCodec(), "s", payload)
    again = decode(Zigbee2MqttCodec(), "s", payload)  # after a restart: state is empty again
    (a,) = [m for m in first.messages if isinstance(m, Event)]
    (b,) = [m for m in again.messages if isinstance(m, Event)]
    assert a.event_id is not None
    assert a.dedup_key == b.dedup_key


def test_wrong_types_are_skipped_and_reported() -> None:
    codec = Zigbee2MqttCodec()
    decoded = decode(codec, "s", {"smoke": "yes", "battery": 100, "linkquality": "good"})
    assert events(decoded) == []
    assert readings(decoded) == {"battery": 100.0}
    assert decoded.problems == ("smoke is str, not true/false", "linkquality is str, not a number")
    decoded = decode(codec, "d", {"contact": 1, "battery": 101, "temperature": 20})
    assert readings(decoded) == {"temperature": 20.0}
    assert len(decoded.problems) == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", RejectReason.MALFORMED_JSON),
        (b"[1, 2]", RejectReason.INVALID_PAYLOAD),
        (b'"smoke"', RejectReason.INVALID_PAYLOAD),
        (b'{"smoke": "yes"}', RejectReason.INVALID_PAYLOAD),
        (b'{"action": 7}', RejectReason.INVALID_PAYLOAD),
        (b'{"pad": "' + b"x" * 20000 + b'"}', RejectReason.OVERSIZE),
    ],
)
def test_bad_payloads(payload: bytes, reason: RejectReason) -> None:
    with pytest.raises(Rejected) as info:
        Zigbee2MqttCodec().decode("zigbee2mqtt/dev", payload, NOW)
    assert info.value.reason is reason


def test_empty_friendly_name() -> None:
    with pytest.raises(Rejected):
        Zigbee2MqttCodec().decode("zigbee2mqtt//x", b"{}", NOW)


def test_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("devices.zigbee2mqtt.MAX_DEVICES", 3)
    codec = Zigbee2MqttCodec()
    for i in range(10):
        decode(codec, f"d{i}", HEIMAN_SMOKE)
    assert len(codec._state) == 3


# -- properties -------------------------------------------------------------------------------
values = st.one_of(
    st.booleans(),
    st.none(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=10),
    st.lists(st.integers(), max_size=2),
)
keys = st.sampled_from(
    [
        *("smoke", "gas", "water_leak", "carbon_monoxide", "sos", "tamper", "battery_low"),
        *("contact", "battery", "linkquality", "temperature", "humidity", "action", "last_seen"),
        "other",
    ]
)


@settings(max_examples=200)
@given(st.lists(st.dictionaries(keys, values, max_size=8), min_size=1, max_size=5))
def test_any_sequence_of_key_values(payloads: list[dict[str, Any]]) -> None:
    codec = Zigbee2MqttCodec()
    for payload in payloads:
        try:
            raw = orjson.dumps(payload)
        except orjson.JSONEncodeError:
            continue
        with contextlib.suppress(Rejected):
            decode(codec, "dev", raw)


@settings(max_examples=200)
@given(st.text(max_size=40), st.binary(max_size=200))
def test_arbitrary_topics_and_bytes_never_raise_anything_else(topic: str, payload: bytes) -> None:
    codec = Zigbee2MqttCodec()
    for t in (topic, f"zigbee2mqtt/{topic}", f"zigbee2mqtt/{topic}/availability"):
        with contextlib.suppress(Rejected):
            codec.decode(t, payload, NOW)
