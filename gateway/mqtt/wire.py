"""MQTT 3.1.1 / 5 packets for a subscriber: encode what it sends, decode what it receives.

Only what a QoS 1 subscriber needs: CONNECT, SUBSCRIBE, PUBACK, PINGREQ and DISCONNECT out;
CONNACK, SUBACK, PUBLISH, PINGRESP and (v5) DISCONNECT in. Pure functions over bytes, so the
connection code stays small and the codec is property-tested on its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_REMAINING",
    "ConnAck",
    "PacketType",
    "ProtocolError",
    "Publish",
    "SubAck",
    "encode_connect",
    "encode_disconnect",
    "encode_pingreq",
    "encode_puback",
    "encode_subscribe",
    "parse_connack",
    "parse_publish",
    "parse_suback",
    "read_header",
]

MAX_REMAINING = 268_435_455  # the largest length four varint bytes can say


class PacketType(IntEnum):
    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ProtocolError(Exception):
    """The broker sent bytes that are not MQTT: the connection cannot continue."""


@dataclass(frozen=True, slots=True)
class ConnAck:
    session_present: bool
    code: int  # 0 = accepted; 3.1.1 return codes 1–5, v5 reason codes ≥ 0x80


@dataclass(frozen=True, slots=True)
class SubAck:
    packet_id: int
    codes: tuple[int, ...]  # granted QoS, or ≥ 0x80 for a refused subscription


@dataclass(frozen=True, slots=True)
class Publish:
    topic: bytes
    packet_id: int  # 0 for QoS 0
    qos: int
    dup: bool
    payload: bytes
    retain: bool = False  # sent from the broker's retained store (at subscribe time)


def _varint(value: int) -> bytes:
    if not 0 <= value <= MAX_REMAINING:
        raise ValueError(f"length {value} out of MQTT range")
    out = bytearray()
    while True:
        byte = value % 128
        value //= 128
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _string(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > 0xFFFF:
        raise ValueError("MQTT strings are at most 65,535 bytes")
    return struct.pack("!H", len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes((first_byte,)) + _varint(len(body)) + body


def read_header(buf: bytes | bytearray | memoryview, offset: int) -> tuple[int, int, int] | None:
    """``(first byte, body start, body length)`` of the packet at ``offset``, or None while
    the header is still incomplete."""
    end = len(buf)
    pos = offset + 1
    multiplier = 1
    length = 0
    while True:
        if pos >= end:
            return None
        byte = buf[pos]
        length += (byte & 0x7F) * multiplier
        pos += 1
        if not byte & 0x80:
            return buf[offset], pos, length
        multiplier *= 128
        if multiplier > 128**3:
            raise ProtocolError("malformed remaining length")


def _skip_properties(body: bytes | bytearray | memoryview, pos: int, end: int) -> int:
    """Position after a v5 property block (its varint length, then the properties)."""
    multiplier = 1
    length = 0
    while True:
        if pos >= end:
            raise ProtocolError("truncated property length")
        byte = body[pos]
        pos += 1
        length += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            break
        multiplier *= 128
        if multiplier > 128**3:
            raise ProtocolError("malformed property length")
    if pos + length > end:
        raise ProtocolError("truncated properties")
    return pos + length


def encode_connect(
    client_id: str,
    *,
    keepalive: int,
    clean: bool,
    v5: bool,
    username: str | None = None,
    password: str | None = None,
    session_expiry: int = 0,
    receive_maximum: int | None = None,
) -> bytes:
    flags = 0x02 if clean else 0
    if username is not None:
        flags |= 0x80
        if password is not None:
            flags |= 0x40
    body = bytearray(_string("MQTT"))
    body += bytes((5 if v5 else 4, flags))
    body += struct.pack("!H", keepalive)
    if v5:
        props = bytearray()
        if session_expiry:
            props += b"\x11" + struct.pack("!I", min(session_expiry, 0xFFFFFFFF))
        if receive_maximum is not None:
            props += b"\x21" + struct.pack("!H", max(1, min(receive_maximum, 0xFFFF)))
        body += _varint(len(props)) + props
    body += _string(client_id)
    if username is not None:
        body += _string(username)
        if password is not None:
            body += _string(password)
    return _packet(PacketType.CONNECT << 4, bytes(body))


def encode_subscribe(
    packet_id: int, topics: list[str], *, qos: int, v5: bool, retain_handling: int = 0
) -> bytes:
    """``retain_handling`` (v5 only): 0 send retained messages at every subscribe, 1 only
    when the subscription is new, 2 never."""
    body = bytearray(struct.pack("!H", packet_id))
    if v5:
        body += b"\x00"  # no properties
    options = qos | (retain_handling << 4) if v5 else qos
    for topic in topics:
        body += _string(topic) + bytes((options,))
    return _packet(PacketType.SUBSCRIBE << 4 | 0x02, bytes(body))


def encode_puback(packet_id: int) -> bytes:
    # The two-byte form means "success" in v5 too; a reason code ≥ 0x80 would make the broker
    # discard the message (FIELD_NOTES), so none is ever sent.
    return b"\x40\x02" + struct.pack("!H", packet_id)


def encode_pingreq() -> bytes:
    return b"\xc0\x00"


def encode_disconnect() -> bytes:
    # v5: an empty DISCONNECT is "normal disconnection", which keeps the session (expiry set
    # at CONNECT); 3.1.1 has no body anyway.
    return b"\xe0\x00"


def parse_connack(body: bytes | memoryview, *, v5: bool) -> ConnAck:
    if len(body) < 2:
        raise ProtocolError("CONNACK too short")
    return ConnAck(session_present=bool(body[0] & 0x01), code=body[1])


def parse_suback(body: bytes | memoryview, *, v5: bool) -> SubAck:
    if len(body) < 3:
        raise ProtocolError("SUBACK too short")
    (packet_id,) = struct.unpack_from("!H", body, 0)
    pos = _skip_properties(body, 2, len(body)) if v5 else 2
    return SubAck(packet_id=packet_id, codes=tuple(body[pos:]))


def parse_publish(
    first_byte: int, buf: bytes | bytearray, start: int, end: int, *, v5: bool
) -> Publish:
    """The PUBLISH whose body is ``buf[start:end]`` (offsets, so a receive buffer is parsed
    in place without copying each packet first)."""
    qos = (first_byte >> 1) & 0x03
    if qos == 3:
        raise ProtocolError("PUBLISH with QoS 3")
    if end - start < 2:
        raise ProtocolError("PUBLISH too short")
    (topic_len,) = struct.unpack_from("!H", buf, start)
    pos = start + 2 + topic_len
    if pos > end:
        raise ProtocolError("PUBLISH topic runs past the packet")
    topic = bytes(buf[start + 2 : pos])
    packet_id = 0
    if qos:
        if pos + 2 > end:
            raise ProtocolError("PUBLISH without packet id")
        (packet_id,) = struct.unpack_from("!H", buf, pos)
        pos += 2
    if v5:
        pos = _skip_properties(buf, pos, end)
    return Publish(
        topic=topic,
        packet_id=packet_id,
        qos=qos,
        dup=bool(first_byte & 0x08),
        payload=bytes(buf[pos:end]),
        retain=bool(first_byte & 0x01),
    )
