"""The SPEC serial frame: CRC, encoding, the incremental decoder and the mapping to events."""

from __future__ import annotations

import contextlib
import struct
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.codec import Rejected
from devices.codecs import Skipped
from devices.models import DeviceState, Event, EventType, Status, Telemetry
from devices.serial_frame import (
    AckFrame,
    EventFrame,
    Frame,
    FrameDecoder,
    HeartbeatFrame,
    SkipReason,
    TelemetryFrame,
    crc16_modbus,
    decode_frame,
    encode,
    encode_ack,
)

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def reference_crc(data: bytes) -> int:
    """CRC-16/MODBUS bit by bit, written from the definition (no table), to check the codec."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def frames_of(items: list[Frame | Skipped]) -> list[Frame]:
    return [i for i in items if not isinstance(i, Skipped)]


def skipped(items: list[Frame | Skipped]) -> list[str]:
    return [i.reason for i in items if isinstance(i, Skipped)]


def test_crc_check_value() -> None:
    assert crc16_modbus(b"123456789") == 0x4B37  # the catalogue check value
    assert reference_crc(b"123456789") == 0x4B37


def test_sos_frame_bytes_by_hand() -> None:
    # SOS from 0x0001E240, SEQ 7, battery 88: LEN = 8 + 2 = 10.
    inner = bytes([0x0A, 0x01, 0x01, 0x00, 0x01, 0xE2, 0x40, 0x00, 0x07, 0x01, 88])
    expected = b"\xaa\x55" + inner + struct.pack("<H", reference_crc(inner))
    assert encode(EventFrame(addr=0x0001E240, seq=7, code=0x01, battery=88)) == expected
    assert frames_of(FrameDecoder().feed(expected)) == [EventFrame(0x0001E240, 7, 1, 88)]


def test_ack_layout() -> None:
    raw = encode_ack(0x0000ABCD, 0x0102, 0x0102, 0x02)
    assert raw[:2] == b"\xaa\x55"
    assert raw[2] == 11  # LEN: VER TYPE ADDR SEQ + acked SEQ + status
    assert raw[3:5] == b"\x01\x81"
    assert raw[5:9] == b"\x00\x00\xab\xcd"
    assert raw[9:13] == b"\x01\x02\x01\x02"
    assert raw[13] == 0x02
    assert struct.unpack("<H", raw[-2:])[0] == reference_crc(raw[2:-2])


def test_split_concatenated_and_garbage() -> None:
    a = encode(EventFrame(1, 1, 0x10, 100))
    b = encode(HeartbeatFrame(2, 9, 77, -71))
    c = encode(TelemetryFrame(3, 4, ((1, 21.5), (2, 40.0), (4, 88.0))))
    stream = b"\x00\xff" + a + b"noise\xaa\x00" + b + c + b"\xaa"
    one_go = FrameDecoder().feed(stream)
    decoder = FrameDecoder()
    byte_by_byte = [item for i in range(len(stream)) for item in decoder.feed(stream[i : i + 1])]
    expected = [EventFrame(1, 1, 0x10, 100), HeartbeatFrame(2, 9, 77, -71)]
    expected.append(TelemetryFrame(3, 4, ((1, 21.5), (2, 40.0), (4, 88.0))))
    assert frames_of(one_go) == expected
    assert frames_of(byte_by_byte) == expected
    assert set(skipped(one_go)) == {SkipReason.GARBAGE}
    assert decoder.pending  # the trailing AA may start a frame


def test_bad_crc_is_skipped_and_the_next_frame_survives() -> None:
    bad = bytearray(encode(EventFrame(1, 1, 0x01, 90)))
    bad[-1] ^= 0xFF
    good = encode(EventFrame(1, 2, 0x01, 90))
    items = FrameDecoder().feed(bytes(bad) + good)
    assert frames_of(items) == [EventFrame(1, 2, 1, 90)]
    assert skipped(items) == [SkipReason.BAD_CRC]


def test_a_frame_starting_inside_a_corrupted_one_is_found() -> None:
    # A header whose LEN (telemetry, 5 metrics) swallows the next frame: the CRC fails, and
    # the decoder goes back to the sync inside instead of throwing the good frame away.
    good = encode(EventFrame(7, 3, 0x01, 50))
    fake_header = b"\xaa\x55" + bytes([8 + 15, 1, 2]) + b"\x00\x00\x00\x07\x00\x01"
    filler = b"\x01" * (8 + 15 - 8 - len(good) + 2)
    items = FrameDecoder().feed(fake_header + good + filler + b"\x00\x00")
    assert EventFrame(7, 3, 1, 50) in frames_of(items)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (b"\xaa\x55\x0a\x02\x01", SkipReason.BAD_VERSION),
        (b"\xaa\x55\x0a\x01\x07", SkipReason.BAD_TYPE),
        (b"\xaa\x55\xff\x01\x01", SkipReason.BAD_LENGTH),  # oversized LEN for an event
        (b"\xaa\x55\x03\x01\x01", SkipReason.BAD_LENGTH),  # shorter than the fixed part
        (b"\xaa\x55\xfb\x01\x02", SkipReason.BAD_LENGTH),  # more metrics than allowed
    ],
)
def test_bad_headers_are_refused_at_once(header: bytes, reason: SkipReason) -> None:
    good = encode(EventFrame(5, 5, 0x01, 60))
    items = FrameDecoder().feed(header + good)
    assert reason in skipped(items)
    assert frames_of(items) == [EventFrame(5, 5, 1, 60)]  # not held back by the bad LEN


def test_incomplete_frame_expires() -> None:
    decoder = FrameDecoder()
    partial = encode(EventFrame(1, 1, 1, 1))[:7]
    assert decoder.feed(partial) == []
    assert decoder.pending
    assert skipped(decoder.expire()) == [SkipReason.TRUNCATED, SkipReason.GARBAGE]
    assert not decoder.pending
    assert frames_of(decoder.feed(encode(EventFrame(1, 2, 1, 1)))) == [EventFrame(1, 2, 1, 1)]


# -- frames → messages ------------------------------------------------------------------------
def test_event_frame_to_event() -> None:
    decoded = decode_frame("bus1", EventFrame(0xABCD, 41, 0x12, 64), NOW)
    assert decoded.address.key == ("bus1", "0x0000ABCD")
    (event,) = decoded.bind("water-1")
    assert isinstance(event, Event)
    assert (event.device_id, event.type, event.seq, event.battery) == (
        "water-1",
        EventType.WATER_LEAK,
        41,
        64,
    )
    assert event.source == "serial"
    assert event.ts == NOW
    assert event.dedup_key == f"seq:41:w300:{int(NOW.timestamp()) // 300}"
    assert '"addr":43981' in event.payload


def test_unknown_event_code_is_rejected() -> None:
    with pytest.raises(Rejected):
        decode_frame("bus1", EventFrame(1, 1, 0x77, 50), NOW)


def test_heartbeat_is_status_and_readings() -> None:
    status, telemetry = decode_frame("bus1", HeartbeatFrame(1, 2, 93, -67), NOW).bind("btn-1")
    assert isinstance(status, Status)
    assert status.state is DeviceState.ONLINE
    assert status.battery == 93
    assert isinstance(telemetry, Telemetry)
    assert {(r.metric, r.value) for r in telemetry.readings} == {("rssi", -67.0), ("battery", 93.0)}
    # 0xFF: the device does not measure its battery.
    status, telemetry = decode_frame("bus1", HeartbeatFrame(1, 3, 0xFF, -80), NOW).bind("b")
    assert isinstance(status, Status)
    assert status.battery is None
    assert isinstance(telemetry, Telemetry)
    assert [r.metric for r in telemetry.readings] == ["rssi"]


def test_telemetry_scaling_and_unknown_metrics() -> None:
    frame = TelemetryFrame(1, 5, ((1, -12.5), (3, 4.0), (9, 1.0)))
    decoded = decode_frame("bus1", frame, NOW)
    (telemetry,) = decoded.bind("th-1")
    assert isinstance(telemetry, Telemetry)
    assert {(r.metric, r.value) for r in telemetry.readings} == {
        ("temperature", -12.5),
        ("gas_ppm", 4.0),
    }
    assert decoded.problems == ("unknown metric id 0x09",)
    with pytest.raises(Rejected):
        decode_frame("bus1", TelemetryFrame(1, 6, ((9, 1.0),)), NOW)


# -- properties -------------------------------------------------------------------------------
u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)
frames = st.one_of(
    st.builds(EventFrame, u32, u16, u8, u8),
    st.builds(HeartbeatFrame, u32, u16, u8, st.integers(-128, 127)),
    st.builds(AckFrame, u32, u16, u16, u8),
    st.builds(
        TelemetryFrame,
        u32,
        u16,
        st.lists(
            st.tuples(u8, st.integers(-32768, 32767).map(lambda v: v / 10)), min_size=1, max_size=16
        ).map(tuple),
    ),
)


@given(st.lists(st.tuples(st.binary(max_size=12), frames), max_size=6), st.data())
def test_any_slicing_with_garbage_gives_the_same_frames(
    parts: list[tuple[bytes, Frame]], data: st.DataObject
) -> None:
    # Garbage that cannot contain a sync keeps the expectation exact.
    clean = [(g.replace(b"\xaa", b"\x00"), f) for g, f in parts]
    stream = b"".join(g + encode(f) for g, f in clean)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = FrameDecoder()
    got: list[Frame] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        got += frames_of(decoder.feed(stream[last:cut]))
        last = cut
    assert got == [f for _, f in clean]


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_and_every_byte_is_accounted_for(data: bytes) -> None:
    decoder = FrameDecoder()
    items = decoder.feed(data)
    while decoder.pending:  # the line goes quiet: give up on what never completed
        items += decoder.expire()
    accounted = 0
    for item in items:
        if isinstance(item, Skipped):
            assert item.data
            accounted += len(item.data)
        else:
            accounted += len(encode(item))
            with contextlib.suppress(Rejected):
                decode_frame("bus1", item, NOW)
    assert accounted == len(data)


@given(st.lists(st.one_of(st.binary(max_size=20), frames.map(encode)), max_size=10), st.data())
def test_frames_mixed_with_noise_and_flipped_bits(chunks: list[bytes], data: st.DataObject) -> None:
    stream = bytearray(b"".join(chunks))
    for _ in range(data.draw(st.integers(0, 3))):
        if stream:
            at = data.draw(st.integers(0, len(stream) - 1))
            stream[at] ^= 1 << data.draw(st.integers(0, 7))
    decoder = FrameDecoder()
    items = [item for i in range(0, len(stream), 7) for item in decoder.feed(stream[i : i + 7])]
    while decoder.pending:
        items += decoder.expire()
    accounted = sum(len(i.data) if isinstance(i, Skipped) else len(encode(i)) for i in items)
    assert accounted == len(stream)


def test_a_rebooted_caller_reusing_a_seq_later_is_a_new_press() -> None:
    from datetime import UTC, datetime, timedelta

    from devices.models import Event, EventType
    from devices.serial_frame import SERIAL_SEQ_WINDOW

    t0 = datetime(2026, 11, 27, 8, 0, 10, tzinfo=UTC)

    def press(at: datetime) -> Event:
        return Event(
            "btn", EventType.SOS, at, at, seq=1, source="serial", seq_window=SERIAL_SEQ_WINDOW
        )

    assert press(t0).dedup_key == press(t0 + timedelta(seconds=5)).dedup_key  # retransmission
    assert press(t0).dedup_key != press(t0 + timedelta(hours=2)).dedup_key  # after a reboot
