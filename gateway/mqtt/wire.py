"""MQTT 3.1.1 / 5 packets for the gateway's connections: encode what they send, decode what
they receive.

Only what a QoS 1 subscriber (gateway/mqtt/lane.py) and a QoS 1 publisher
(gateway/mqtt/publisher.py) need: CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ and DISCONNECT
out; CONNACK, SUBACK, PUBLISH, PUBACK, PINGRESP and (v5) DISCONNECT in. Pure functions over
bytes, so the connection code stays small and the codec is property-tested on its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "MAX_REMAINING",
    "NO_MATCHING_SUBSCRIBERS",
    "ConnAck",
    "PacketType",
    "ProtocolError",
    "PubAck",
    "Publish",
    "SubAck",
    "check_topic_name",
    "connack_refusal",
    "encode_connect",
    "encode_disconnect",
    "encode_pingreq",
    "encode_puback",
    "encode_publish",
    "encode_subscribe",
    "parse_connack",
    "parse_puback",
    "parse_publish",
    "parse_suback",
    "read_header",
    "reason_text",
]

MAX_REMAINING = 268_435_455  # the largest length four varint bytes can say
NO_MATCHING_SUBSCRIBERS = 0x10  # v5 PUBACK: accepted, but nobody subscribes to the topic


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


# v5 reason codes (one code space for every packet), worded for logs and the alert timeline.
_REASONS = {
    0x00: "success",
    0x10: "no matching subscribers",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client id rejected",
    0x86: "bad user name or password",
    0x87: "not authorised",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8C: "bad authentication method",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x90: "topic name invalid",
    0x91: "packet identifier in use",
    0x93: "receive maximum exceeded",
    0x95: "packet too large",
    0x96: "message rate too high",
    0x97: "quota exceeded",
    0x98: "administrative action",
    0x99: "payload format invalid",
    0x9A: "retain not supported",
    0x9B: "QoS not supported",
    0x9C: "use another server",
    0x9D: "server moved",
    0x9F: "connection rate exceeded",
}
# 3.1.1 CONNACK return codes, which v5 replaced with the reason codes above.
_REFUSED_311 = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


def reason_text(code: int) -> str:
    """A v5 reason code for people: ``"not authorised (0x87)"``."""
    return f"{_REASONS.get(code, 'reason code')} (0x{code:02x})"


def connack_refusal(code: int, *, v5: bool) -> str:
    """Why the broker refused a connection, from its CONNACK code."""
    if v5:
        return reason_text(code)
    return _REFUSED_311.get(code, f"return code {code}")


@dataclass(frozen=True, slots=True)
class ConnAck:
    """The broker's answer to CONNECT. The limits after ``code`` are v5 CONNACK properties
    (3.1.1 brokers announce none: the defaults are what the standard says when absent)."""

    session_present: bool
    code: int  # 0 = accepted; 3.1.1 return codes 1–5, v5 reason codes ≥ 0x80
    # How many QoS 1 publishes the broker takes unacknowledged from us at once.
    receive_maximum: int = 0xFFFF
    maximum_qos: int = 2
    retain_available: bool = True
    maximum_packet_size: int | None = None  # None: no limit beyond the protocol's
    server_keep_alive: int | None = None  # the broker overrides the keepalive we asked for


@dataclass(frozen=True, slots=True)
class PubAck:
    packet_id: int
    reason: int = 0  # v5 reason code: 0 success, 0x10 no matching subscribers, ≥ 0x80 refused


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


def _read_varint(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, int]:
    """``(value, position after it)`` of the variable byte integer at ``pos``."""
    multiplier = 1
    value = 0
    while True:
        if pos >= end:
            raise ProtocolError("truncated variable byte integer")
        byte = buf[pos]
        pos += 1
        value += (byte & 0x7F) * multiplier
        if not byte & 0x80:
            return value, pos
        multiplier *= 128
        if multiplier > 128**3:
            raise ProtocolError("malformed variable byte integer")


def _skip_properties(body: bytes | bytearray | memoryview, pos: int, end: int) -> int:
    """Position after a v5 property block (its varint length, then the properties)."""
    length, pos = _read_varint(body, pos, end)
    if pos + length > end:
        raise ProtocolError("truncated properties")
    return pos + length


# v5 property identifiers by the size of their value (MQTT 5.0, 2.2.2.2). A property has no
# length of its own, so one whose kind is unknown cannot be stepped over.
_BYTE_PROPS = frozenset({0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A})
_INT16_PROPS = frozenset({0x13, 0x21, 0x22, 0x23})
_INT32_PROPS = frozenset({0x02, 0x11, 0x18, 0x27})
_VARINT_PROPS = frozenset({0x0B})
_BYTES_PROPS = frozenset({0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F})  # 2-byte length
_PAIR_PROPS = frozenset({0x26})  # user property: two strings


def _read_properties(
    buf: bytes | bytearray | memoryview, pos: int, end: int
) -> tuple[dict[int, int | bytes], int]:
    """The v5 property block at ``pos`` as ``{identifier: value}`` (integers as ints, strings
    and binary data as bytes; user properties are read past, not kept), and the position
    after it."""
    length, pos = _read_varint(buf, pos, end)
    stop = pos + length
    if stop > end:
        raise ProtocolError("truncated properties")
    found: dict[int, int | bytes] = {}
    try:
        while pos < stop:
            ident = buf[pos]
            pos += 1
            if ident in _BYTE_PROPS:
                found[ident] = buf[pos]
                pos += 1
            elif ident in _INT16_PROPS:
                (found[ident],) = struct.unpack_from("!H", buf, pos)
                pos += 2
            elif ident in _INT32_PROPS:
                (found[ident],) = struct.unpack_from("!I", buf, pos)
                pos += 4
            elif ident in _VARINT_PROPS:
                found[ident], pos = _read_varint(buf, pos, stop)
            elif ident in _BYTES_PROPS or ident in _PAIR_PROPS:
                for _ in range(2 if ident in _PAIR_PROPS else 1):
                    (size,) = struct.unpack_from("!H", buf, pos)
                    value = bytes(buf[pos + 2 : pos + 2 + size])
                    pos += 2 + size
                if ident in _BYTES_PROPS:
                    found[ident] = value
            else:
                raise ProtocolError(f"unknown property 0x{ident:02x}")
    except (struct.error, IndexError) as exc:
        raise ProtocolError("truncated property") from exc
    if pos != stop:
        raise ProtocolError("a property runs past its block")
    return found, stop


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


def check_topic_name(topic: str) -> None:
    """Raises ValueError unless ``topic`` may be published to: not empty, no wildcard (``+``,
    ``#``) or NUL, at most 65,535 bytes of UTF-8."""
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"not a topic name to publish to: {topic!r}")
    if len(topic.encode("utf-8")) > 0xFFFF:  # UnicodeEncodeError is a ValueError too
        raise ValueError("topic over 65,535 bytes")


def encode_publish(
    topic: str,
    payload: bytes,
    *,
    qos: int,
    packet_id: int,
    v5: bool,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    """A PUBLISH at QoS 0 or 1 (``packet_id`` is not sent at QoS 0). On v5 the property block
    is empty. Raises ValueError for what no broker may be sent: a topic ``check_topic_name``
    refuses, QoS 2 (its four-packet flow is not spoken here), a packet id out of range, a
    packet over MQTT's size limit."""
    check_topic_name(topic)
    if qos not in (0, 1):
        raise ValueError(f"QoS {qos} is not supported (0 or 1)")
    body = bytearray(_string(topic))
    if qos:
        if not 1 <= packet_id <= 0xFFFF:
            raise ValueError(f"packet id {packet_id} out of range")
        body += struct.pack("!H", packet_id)
    if v5:
        body += b"\x00"  # no properties
    body += payload
    first = PacketType.PUBLISH << 4 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    return _packet(first, bytes(body))


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
    session_present, code = bool(body[0] & 0x01), body[1]
    if not v5 or len(body) == 2:
        # A v5 refusal is sometimes sent without its (mandatory) property length: the code is
        # what matters then.
        return ConnAck(session_present, code)
    props, _ = _read_properties(body, 2, len(body))
    receive_maximum = int(props.get(0x21, 0xFFFF))
    max_packet = props.get(0x27)
    keep_alive = props.get(0x13)
    if receive_maximum == 0 or max_packet == 0:
        raise ProtocolError("CONNACK with a zero Receive Maximum or Maximum Packet Size")
    return ConnAck(
        session_present,
        code,
        receive_maximum=receive_maximum,
        maximum_qos=int(props.get(0x24, 2)),
        retain_available=bool(props.get(0x25, 1)),
        maximum_packet_size=None if max_packet is None else int(max_packet),
        server_keep_alive=None if keep_alive is None else int(keep_alive),
    )


def parse_puback(body: bytes | memoryview, *, v5: bool) -> PubAck:
    """A PUBACK: packet id, and on v5 its reason code (absent means success; properties
    such as a reason string are checked for form and not kept)."""
    if len(body) < 2 or (not v5 and len(body) != 2):
        raise ProtocolError(f"PUBACK of {len(body)} bytes")
    (packet_id,) = struct.unpack_from("!H", body, 0)
    if len(body) == 2:
        return PubAck(packet_id)
    if len(body) > 3:
        _read_properties(body, 3, len(body))
    return PubAck(packet_id, body[2])


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
