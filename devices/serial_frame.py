"""The serial frame of SPEC (RS-485 concentrators, USB dongles of one-button callers).

```
AA 55 | LEN u8 | VER u8 = 01 | TYPE u8 | ADDR u32 | SEQ u16 | BODY (LEN-8) | CRC16 u16 LE
```
LEN counts VER..BODY; CRC-16/MODBUS over LEN..BODY; integers big-endian except the CRC.

``FrameDecoder`` is incremental: bytes in any slicing (one at a time, several frames per
read, garbage in between) give the same frames. A header that cannot start a valid frame
(wrong version, unknown type, a length that does not fit the type) is refused as soon as its
five bytes are in, so a corrupted length never makes the decoder wait for bytes that belong
to the next frames; a frame that stays incomplete is given up by ``expire()`` (the reader calls
it after a quiet gap). Everything thrown away comes out as ``Skipped`` with a reason.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, StrEnum

import orjson

from devices.codec import Rejected, RejectReason
from devices.codecs import Decoded, DeviceAddress, Skipped
from devices.models import (
    DeviceMessage,
    DeviceState,
    Event,
    EventType,
    Reading,
    Status,
    Telemetry,
)

SYNC = b"\xaa\x55"
VERSION = 1
HEADER_BYTES = 5  # AA 55 LEN VER TYPE: enough to judge whether a frame can start here
FIXED_LEN = 8  # VER TYPE ADDR SEQ
MAX_METRICS = 16  # 5 metrics are defined; room for firmware that repeats or adds some
SERIAL_SEQ_WINDOW = 300
SOURCE = "serial"


class FrameType(IntEnum):
    EVENT = 0x01
    TELEMETRY = 0x02
    HEARTBEAT = 0x03
    ACK = 0x81


class AckStatus(IntEnum):
    RECEIVED = 0x01
    RESPONDER_ASSIGNED = 0x02
    RESOLVED = 0x03


class SkipReason(StrEnum):
    """Why bytes were dropped; each is a metrics label."""

    GARBAGE = "garbage"  # bytes outside any frame
    BAD_CRC = "bad_crc"
    BAD_LENGTH = "bad_length"  # LEN does not fit the frame type (too short, oversized)
    BAD_VERSION = "bad_version"
    BAD_TYPE = "bad_type"
    TRUNCATED = "truncated"  # a frame that never completed


EVENT_CODES: dict[int, EventType] = {
    0x01: EventType.SOS,
    0x02: EventType.CANCEL,
    0x03: EventType.FALL,
    0x04: EventType.LOW_BATTERY,
    0x05: EventType.TAMPER,
    0x10: EventType.SMOKE,
    0x11: EventType.GAS,
    0x12: EventType.WATER_LEAK,
    0x13: EventType.DOOR_OPEN,
    0x14: EventType.DOOR_CLOSE,
}
CODE_OF_EVENT = {v: k for k, v in EVENT_CODES.items()}

METRICS: dict[int, str] = {
    0x01: "temperature",
    0x02: "humidity",
    0x03: "gas_ppm",
    0x04: "battery",
    0x05: "heart_rate",
}
METRIC_IDS = {v: k for k, v in METRICS.items()}


@dataclass(frozen=True, slots=True)
class EventFrame:
    addr: int
    seq: int
    code: int
    battery: int


@dataclass(frozen=True, slots=True)
class TelemetryFrame:
    addr: int
    seq: int
    values: tuple[tuple[int, float], ...]  # (metric id, value) with the ×10 scaling undone


@dataclass(frozen=True, slots=True)
class HeartbeatFrame:
    addr: int
    seq: int
    battery: int
    rssi: int


@dataclass(frozen=True, slots=True)
class AckFrame:
    addr: int
    seq: int
    acked_seq: int
    status: int


Frame = EventFrame | TelemetryFrame | HeartbeatFrame | AckFrame


# -- CRC-16/MODBUS ----------------------------------------------------------------------------
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_modbus(data: bytes) -> int:
    """CRC-16/MODBUS: poly 0x8005 reflected (0xA001), init 0xFFFF, no final xor."""
    crc = 0xFFFF
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# -- encoding ---------------------------------------------------------------------------------
def _body(frame: Frame) -> tuple[FrameType, bytes]:
    if isinstance(frame, EventFrame):
        return FrameType.EVENT, struct.pack(">BB", frame.code, frame.battery)
    if isinstance(frame, TelemetryFrame):
        body = b"".join(
            struct.pack(">Bh", metric, round(value * 10)) for metric, value in frame.values
        )
        return FrameType.TELEMETRY, body
    if isinstance(frame, HeartbeatFrame):
        return FrameType.HEARTBEAT, struct.pack(">Bb", frame.battery, frame.rssi)
    return FrameType.ACK, struct.pack(">HB", frame.acked_seq, frame.status)


def encode(frame: Frame) -> bytes:
    """The bytes of one frame, sync to CRC. Raises ``struct.error`` for out-of-range fields."""
    frame_type, body = _body(frame)
    length = FIXED_LEN + len(body)
    if length > 255:
        raise ValueError(f"frame body of {len(body)} bytes does not fit LEN")
    inner = struct.pack(">BBBIH", length, VERSION, frame_type, frame.addr, frame.seq) + body
    return SYNC + inner + struct.pack("<H", crc16_modbus(inner))


def encode_ack(addr: int, seq: int, acked_seq: int, status: AckStatus | int) -> bytes:
    """The gateway's ``81`` frame: the device's event ``acked_seq`` with a status."""
    return encode(AckFrame(addr=addr, seq=seq, acked_seq=acked_seq, status=int(status)))


# -- decoding ---------------------------------------------------------------------------------
def _length_fits(frame_type: int, length: int) -> bool:
    body = length - FIXED_LEN
    if frame_type in (FrameType.EVENT, FrameType.HEARTBEAT):
        return body == 2
    if frame_type == FrameType.ACK:
        return body == 3
    return 0 < body <= 3 * MAX_METRICS and body % 3 == 0  # telemetry


def _parse(frame_type: int, addr: int, seq: int, body: bytes) -> Frame:
    if frame_type == FrameType.EVENT:
        code, battery = struct.unpack(">BB", body)
        return EventFrame(addr, seq, code, battery)
    if frame_type == FrameType.HEARTBEAT:
        battery, rssi = struct.unpack(">Bb", body)
        return HeartbeatFrame(addr, seq, battery, rssi)
    if frame_type == FrameType.ACK:
        acked, status = struct.unpack(">HB", body)
        return AckFrame(addr, seq, acked, status)
    values = tuple((metric, raw / 10.0) for metric, raw in struct.iter_unpack(">Bh", body))
    return TelemetryFrame(addr, seq, values)


class FrameDecoder:
    """Bytes in, frames and counted skips out; resynchronises on ``AA 55``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._garbage = bytearray()

    @property
    def pending(self) -> bool:
        """True while a frame has started but not completed."""
        return len(self._buf) > 0

    def feed(self, data: bytes) -> list[Frame | Skipped]:
        self._buf += data
        out: list[Frame | Skipped] = []
        while self._step(out):
            pass
        self._flush_garbage(out)
        return out

    def expire(self) -> list[Frame | Skipped]:
        """Give up on an incomplete frame (the line went quiet mid-frame) and rescan after
        its sync bytes: a real frame may start inside what was taken for its header."""
        out: list[Frame | Skipped] = []
        if len(self._buf) >= 2 and self._buf[:2] == SYNC:
            out.append(Skipped(SkipReason.TRUNCATED, bytes(self._buf[:2])))
            del self._buf[:2]
        elif self._buf:  # a lone trailing AA that was never followed by 55
            self._garbage += self._buf
            self._buf.clear()
        while self._step(out):
            pass
        self._flush_garbage(out)
        return out

    def _drop(self, out: list[Frame | Skipped], reason: SkipReason, count: int) -> None:
        self._flush_garbage(out)
        out.append(Skipped(reason, bytes(self._buf[:count])))
        del self._buf[:count]

    def _flush_garbage(self, out: list[Frame | Skipped]) -> None:
        if self._garbage:
            out.append(Skipped(SkipReason.GARBAGE, bytes(self._garbage)))
            self._garbage.clear()

    def _step(self, out: list[Frame | Skipped]) -> bool:
        """Take one thing off the buffer; False when more bytes are needed."""
        buf = self._buf
        start = buf.find(SYNC)
        if start < 0:
            # Keep a trailing AA: it may be the first half of the next sync.
            keep = 1 if buf and buf[-1] == SYNC[0] else 0
            self._garbage += buf[: len(buf) - keep]
            del buf[: len(buf) - keep]
            return False
        if start > 0:
            self._garbage += buf[:start]
            del buf[:start]
        if len(buf) < HEADER_BYTES:
            return False
        length, version, frame_type = buf[2], buf[3], buf[4]
        if version != VERSION:
            self._drop(out, SkipReason.BAD_VERSION, 2)
            return True
        if frame_type not in FrameType._value2member_map_:
            self._drop(out, SkipReason.BAD_TYPE, 2)
            return True
        if not _length_fits(frame_type, length):
            self._drop(out, SkipReason.BAD_LENGTH, 2)
            return True
        total = 2 + 1 + length + 2  # sync, LEN, VER..BODY, CRC
        if len(buf) < total:
            return False
        inner = bytes(buf[2 : total - 2])
        (crc,) = struct.unpack("<H", buf[total - 2 : total])
        if crc != crc16_modbus(inner):
            # Drop only up to the next sync inside the bad frame: a good frame may start there
            # (its first bytes were taken for the tail of a corrupted one).
            nxt = buf.find(SYNC, 1, total + 1)
            if 0 < nxt < total:
                cut = nxt
            elif len(buf) == total and buf[-1] == SYNC[0]:
                cut = total - 1  # its last byte may be the first half of the next sync
            else:
                cut = total
            self._drop(out, SkipReason.BAD_CRC, cut)
            return True
        addr, seq = struct.unpack(">IH", inner[3:9])
        self._flush_garbage(out)
        out.append(_parse(frame_type, addr, seq, inner[9:]))
        del buf[:total]
        return True


# -- frames → messages ------------------------------------------------------------------------
def address(port: str, addr: int) -> DeviceAddress:
    return DeviceAddress(SOURCE, (port, f"0x{addr:08X}"))


def _battery(value: int) -> int | None:
    return value if value <= 100 else None  # 0xFF: the device does not measure it


def decode_frame(port: str, frame: Frame, received_at: datetime) -> Decoded:
    """An uplink frame as typed messages (for the provisional device id of its address).

    Serial frames carry no clock: the gateway's receive time is the event time. An event's
    ``seq`` is kept, so a retransmission (the device missed our ack) is stored once.
    """
    where = address(port, frame.addr)
    device_id = where.pending_id()
    raw = encode(frame).hex(" ").upper()
    messages: tuple[DeviceMessage, ...]
    problems: tuple[str, ...] = ()
    if isinstance(frame, EventFrame):
        event_type = EVENT_CODES.get(frame.code)
        if event_type is None:
            raise Rejected(RejectReason.INVALID_PAYLOAD, f"unknown event code 0x{frame.code:02X}")
        payload = orjson.dumps(
            {
                "frame": raw,
                "port": port,
                "addr": frame.addr,
                "seq": frame.seq,
                "code": frame.code,
                "battery": frame.battery,
            }
        ).decode()
        messages = (
            Event(
                device_id=device_id,
                type=event_type,
                ts=received_at,
                received_at=received_at,
                seq=frame.seq,
                battery=_battery(frame.battery),
                source=SOURCE,
                payload=payload,
                # A caller retransmits within seconds until acked; after a reboot it counts
                # from 1 again, so the same SEQ later that day is a new press.
                seq_window=SERIAL_SEQ_WINDOW,
            ),
        )
    elif isinstance(frame, TelemetryFrame):
        readings = []
        unknown = []
        for metric, value in frame.values:
            name = METRICS.get(metric)
            if name is None:
                unknown.append(f"unknown metric id 0x{metric:02X}")
                continue
            readings.append(Reading(device_id, name, received_at, value))
        if not readings:
            raise Rejected(RejectReason.INVALID_PAYLOAD, "; ".join(unknown) or "no metrics")
        # One value per metric and instant: a repeated metric keeps its last value.
        unique = {r.metric: r for r in readings}
        messages = (
            Telemetry(
                device_id, received_at, received_at, tuple(unique.values()), frame.seq, SOURCE
            ),
        )
        problems = tuple(unknown)
    elif isinstance(frame, HeartbeatFrame):
        battery = _battery(frame.battery)
        readings = [Reading(device_id, "rssi", received_at, float(frame.rssi))]
        if battery is not None:
            readings.append(Reading(device_id, "battery", received_at, float(battery)))
        messages = (
            Status(device_id, DeviceState.ONLINE, received_at, battery=battery, source=SOURCE),
            Telemetry(device_id, received_at, received_at, tuple(readings), frame.seq, SOURCE),
        )
    else:
        raise Rejected(RejectReason.INVALID_PAYLOAD, "an 81 ack is a downlink frame")
    return Decoded(where, messages, raw, problems)
