"""The bench's load generator: MQTT packets encoded ahead, PUBACKs counted in bulk."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from bench.loadgen import (
    LoadError,
    LoadSpec,
    _Acks,
    encode_connect,
    encode_publish_qos1,
    packets,
    remaining_length,
)
from devices.models import Telemetry
from devices.mqtt_json import decode, parse_topic


def _spec(devices: int = 3) -> LoadSpec:
    return LoadSpec(
        host="127.0.0.1",
        port=1883,
        prefix="scgw",
        id_prefix="ld-",
        devices=devices,
        rate=100.0,
        duration=1.0,
        window=10,
        base_ts=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp(),
    )


@pytest.mark.parametrize(
    ("n", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
    ],
)
def test_remaining_length_is_the_mqtt_varint(n: int, encoded: bytes) -> None:
    assert remaining_length(n) == encoded


def test_publish_packet_layout() -> None:
    packet = encode_publish_qos1(b"a/b", 513, b"xyz")
    # PUBLISH QoS 1, remaining length 2+3 topic + 2 packet id + 3 payload = 10
    assert packet == b"\x32\x0a\x00\x03a/b\x02\x01xyz"


def test_connect_is_mqtt_311_clean_session() -> None:
    packet = encode_connect("gen-1", keepalive=60)
    assert packet[0] == 0x10
    assert packet[2:10] == b"\x00\x04MQTT\x04\x02"
    assert packet.endswith(b"\x00\x05gen-1")


def _unpack(packet: bytes) -> tuple[str, int, bytes]:
    """Topic, packet id and payload of a PUBLISH with a 1- or 2-byte remaining length."""
    pos = 2 if packet[1] < 0x80 else 3
    tlen = int.from_bytes(packet[pos : pos + 2], "big")
    topic = packet[pos + 2 : pos + 2 + tlen].decode()
    pid = int.from_bytes(packet[pos + 2 + tlen : pos + 4 + tlen], "big")
    return topic, pid, packet[pos + 4 + tlen :]


def test_packets_spread_over_devices_with_unique_device_timestamps() -> None:
    spec = _spec(devices=3)
    out = packets(spec, 0, 9)
    seen: set[tuple[str, str]] = set()
    received = datetime(2026, 1, 2, 3, 5, tzinfo=UTC)
    for i, packet in enumerate(out):
        topic, pid, payload = _unpack(packet)
        assert pid == i + 1
        assert topic == f"scgw/ld-{i % 3:05d}/telemetry"
        body = orjson.loads(payload)
        assert body["seq"] == i // 3
        seen.add((topic, body["ts"]))
        # the gateway's own codec accepts it as one reading at the device's time
        decoded = decode(parse_topic(topic, "scgw"), payload, received, max_bytes=65536)
        assert isinstance(decoded, Telemetry)
        readings = decoded.readings
        assert len(readings) == 1
        assert readings[0].metric == "temperature"
        assert readings[0].ts.isoformat() == body["ts"]
    assert len(seen) == 9


def test_packet_ids_stay_within_1_to_65535() -> None:
    out = packets(_spec(devices=1), 65534, 3)
    assert [_unpack(p)[1] for p in out] == [65535, 1, 2]


def test_acks_are_counted_across_reads_and_pings_ignored() -> None:
    acks = _Acks()
    acks.feed(b"\x40\x02\x00\x01\x40")  # one PUBACK and the start of the next
    assert acks.count == 1
    acks.feed(b"\x02\x00\x02\xd0\x00\x40\x02\x00\x03")  # its rest, a PINGRESP, one more
    assert acks.count == 3
    acks.feed(b"\x40\x02\x00\x04" * 1000)
    assert acks.count == 1003


def test_an_unexpected_packet_is_an_error() -> None:
    with pytest.raises(LoadError, match="0x30"):
        _Acks().feed(b"\x30\x02\x00\x00")
