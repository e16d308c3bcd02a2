"""The subscriber's packet codec, checked against packets built here independently (and by
paho, the reference client) — including split and concatenated reads."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.mqtt import wire


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, *, qos: int, packet_id: int, dup: bool, props: bytes | None
) -> bytes:
    """A PUBLISH as a broker sends it; ``props`` is a v5 property block (None on 3.1.1)."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", packet_id)
    if props is not None:
        body += varint(len(props)) + props
    body += payload
    first = 0x30 | (qos << 1) | (0x08 if dup else 0)
    return bytes((first,)) + varint(len(body)) + body


def parse_stream(stream: bytes, *, v5: bool) -> list[wire.Publish]:
    out = []
    offset = 0
    while offset < len(stream):
        header = wire.read_header(stream, offset)
        assert header is not None
        first, start, length = header
        out.append(wire.parse_publish(first, stream, start, start + length, v5=v5))
        offset = start + length
    return out


topics = st.binary(min_size=1, max_size=300)
payloads = st.binary(max_size=20_000)
user_props = st.lists(st.tuples(st.text(max_size=20), st.text(max_size=40)), max_size=3)


@given(topics, payloads, st.sampled_from([0, 1]), st.integers(1, 0xFFFF), st.booleans(), user_props)
def test_publish_round_trip_v5(
    topic: bytes, payload: bytes, qos: int, packet_id: int, dup: bool, props: list[tuple[str, str]]
) -> None:
    p = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    if props:
        p.UserProperty = props
    p.MessageExpiryInterval = 60
    block = _props_body(p)
    packet = publish_packet(topic, payload, qos=qos, packet_id=packet_id, dup=dup, props=block)
    [parsed] = parse_stream(packet, v5=True)
    assert parsed == wire.Publish(topic, packet_id if qos else 0, qos, dup, payload)


def _props_body(p: Properties) -> bytes:
    """paho packs properties with their varint length in front; strip it."""
    packed: bytes = p.pack()  # type: ignore[no-untyped-call]
    header = wire.read_header(b"\x00" + packed, 0)
    assert header is not None
    _, start, _ = header
    return packed[start - 1 :]


@given(topics, payloads, st.integers(1, 0xFFFF), st.booleans())
def test_publish_round_trip_311(topic: bytes, payload: bytes, packet_id: int, dup: bool) -> None:
    packet = publish_packet(topic, payload, qos=1, packet_id=packet_id, dup=dup, props=None)
    assert parse_stream(packet, v5=False) == [wire.Publish(topic, packet_id, 1, dup, payload)]


@given(st.lists(st.tuples(topics, payloads), min_size=1, max_size=20), st.data())
def test_header_needs_the_whole_varint(
    messages: list[tuple[bytes, bytes]], data: st.DataObject
) -> None:
    """A read can end anywhere, even inside the length bytes: read_header says "not yet"."""
    stream = b"".join(
        publish_packet(t, p, qos=1, packet_id=i + 1, dup=False, props=None)
        for i, (t, p) in enumerate(messages)
    )
    cut = data.draw(st.integers(0, len(stream)))
    prefix = stream[:cut]
    offset = 0
    while True:
        header = wire.read_header(prefix, offset)
        if header is None:
            break
        _, start, length = header
        if start + length > len(prefix):
            break
        offset = start + length
    assert offset <= cut


@pytest.mark.parametrize("v5", [False, True])
def test_connect_is_what_paho_would_send(v5: bool) -> None:
    packet = wire.encode_connect(
        "gw-telemetry",
        keepalive=30,
        clean=False,
        v5=v5,
        username="gateway",
        password="s3cret",
        session_expiry=604800,
        receive_maximum=2000,
    )
    header = wire.read_header(packet, 0)
    assert header is not None
    first, start, length = header
    assert first == 0x10
    assert start + length == len(packet)
    body = packet[start:]
    assert body[:6] == b"\x00\x04MQTT"
    assert body[6] == (5 if v5 else 4)
    assert body[7] == 0x80 | 0x40  # user name and password, clean start off
    assert body[8:10] == struct.pack("!H", 30)
    if v5:
        # session expiry (0x11) and receive maximum (0x21), nothing else
        assert body[10:19] == b"\x08\x11" + struct.pack("!I", 604800) + b"\x21" + struct.pack(
            "!H", 2000
        )
    assert body.endswith(b"\x00\x0cgw-telemetry\x00\x07gateway\x00\x06s3cret")


def test_subscribe_and_acks() -> None:
    sub = wire.encode_subscribe(7, ["scgw/+/event", "scgw/responders/+/reply"], qos=1, v5=True)
    assert sub[0] == 0x82  # SUBSCRIBE with its reserved flag bits
    assert b"\x00\x0cscgw/+/event\x01" in sub
    assert wire.encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert wire.parse_suback(b"\x00\x07\x00\x01\x80", v5=True) == wire.SubAck(7, (1, 0x80))
    assert wire.parse_suback(b"\x00\x07\x01", v5=False) == wire.SubAck(7, (1,))
    assert wire.parse_connack(b"\x01\x00\x00", v5=True) == wire.ConnAck(True, 0)
    assert wire.parse_connack(b"\x00\x05", v5=False) == wire.ConnAck(False, 5)


@pytest.mark.parametrize(
    "packet",
    [
        b"\x36\x05\x00\x01a\x00\x01",  # QoS 3
        b"\x32\x01\x00",  # shorter than a topic length
        b"\x32\x04\x00\x09ab",  # topic runs past the packet
        b"\x32\x03\x00\x01a",  # QoS 1 without packet id
    ],
)
def test_malformed_publish_is_a_protocol_error(packet: bytes) -> None:
    header = wire.read_header(packet, 0)
    assert header is not None
    first, start, length = header
    with pytest.raises(wire.ProtocolError):
        wire.parse_publish(first, packet, start, start + length, v5=False)


def test_v5_property_length_past_the_packet_is_a_protocol_error() -> None:
    body = b"\x00\x01t\x00\x01\x7f"  # property block claims 127 bytes
    with pytest.raises(wire.ProtocolError):
        wire.parse_publish(0x32, body, 0, len(body), v5=True)
    # Read as 3.1.1, the same bytes are a valid PUBLISH whose payload is the 0x7f byte.
    assert wire.parse_publish(0x32, body, 0, len(body), v5=False).payload == b"\x7f"


def test_remaining_length_over_four_bytes_is_a_protocol_error() -> None:
    with pytest.raises(wire.ProtocolError):
        wire.read_header(b"\x30\xff\xff\xff\xff\x01", 0)


# -- the publisher's packets ---------------------------------------------------------------------
@given(
    st.text(min_size=1, max_size=200).filter(lambda t: not set(t) & {"+", "#", "\x00"}),
    payloads,
    st.integers(1, 0xFFFF),
    st.booleans(),
    st.booleans(),
)
def test_encode_publish_is_the_packet_a_broker_reads(
    topic: str, payload: bytes, packet_id: int, retain: bool, v5: bool
) -> None:
    """QoS 1: byte for byte what the independent builder above makes (empty v5 property
    block), with the retain bit in the first byte; and it reads back as sent."""
    packet = wire.encode_publish(topic, payload, qos=1, packet_id=packet_id, v5=v5, retain=retain)
    expected = publish_packet(
        topic.encode(), payload, qos=1, packet_id=packet_id, dup=False, props=b"" if v5 else None
    )
    assert packet == bytes((expected[0] | (0x01 if retain else 0),)) + expected[1:]
    assert parse_stream(packet, v5=v5) == [
        wire.Publish(topic.encode(), packet_id, 1, False, payload, retain)
    ]


def test_encode_publish_qos0_has_no_packet_id() -> None:
    assert wire.encode_publish("a/b", b"x", qos=0, packet_id=0, v5=False) == b"\x30\x06\x00\x03a/bx"
    assert wire.encode_publish("a/b", b"x", qos=0, packet_id=0, v5=True) == (
        b"\x30\x07\x00\x03a/b\x00x"
    )
    # dup flag (0x08), QoS 1 (0x02)
    assert wire.encode_publish("t", b"", qos=1, packet_id=1, v5=False, dup=True)[0] == 0x3A


@pytest.mark.parametrize(
    ("topic", "qos", "packet_id", "error"),
    [
        ("scgw/#", 1, 1, "not a topic name"),  # wildcards name many topics: subscribe only
        ("scgw/+/cmd", 1, 1, "not a topic name"),
        ("", 1, 1, "not a topic name"),
        ("a\x00b", 1, 1, "not a topic name"),
        ("\udc80", 1, 1, "can't encode"),  # not encodable as UTF-8
        ("x" * 65_536, 1, 1, "over 65,535 bytes"),
        ("t", 2, 1, "QoS 2 is not supported"),  # its four-packet flow is not spoken
        ("t", 1, 0, "packet id 0 out of range"),  # QoS 1 needs a packet id 1–65535
        ("t", 1, 65_536, "packet id 65536 out of range"),
    ],
)
def test_encode_publish_refuses_what_no_broker_may_be_sent(
    topic: str, qos: int, packet_id: int, error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        wire.encode_publish(topic, b"x", qos=qos, packet_id=packet_id, v5=True)


def test_parse_puback() -> None:
    # 3.1.1, and the v5 short form: success
    assert wire.parse_puback(b"\x12\x34", v5=False) == wire.PubAck(0x1234, 0)
    assert wire.parse_puback(b"\x12\x34", v5=True) == wire.PubAck(0x1234, 0)
    # v5 with a reason code, with and without properties
    assert wire.parse_puback(b"\x00\x07\x10", v5=True) == wire.PubAck(7, 0x10)
    assert wire.parse_puback(b"\x00\x07\x87\x00", v5=True) == wire.PubAck(7, 0x87)
    p = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]
    p.ReasonString = "ACL: 拒绝"
    p.UserProperty = [("broker", "test")]
    packed: bytes = p.pack()  # type: ignore[no-untyped-call]
    assert wire.parse_puback(b"\x00\x07\x87" + packed, v5=True) == wire.PubAck(7, 0x87)


@pytest.mark.parametrize(
    ("body", "v5"),
    [
        (b"\x00", True),  # no packet id
        (b"\x00\x01\x00", False),  # 3.1.1 PUBACKs have nothing after the id
        (b"\x00\x01\x87\x05\x1f", True),  # property block runs past the packet
        (b"\x00\x01\x87\x03\x1f\x00\x09", True),  # reason string runs past its block
        (b"\x00\x01\x87\x01\x7e", True),  # unknown property
    ],
)
def test_malformed_puback_is_a_protocol_error(body: bytes, v5: bool) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.parse_puback(body, v5=v5)


def test_connack_properties_are_read() -> None:
    """What mosquitto 2.0 announces (Receive Maximum, Topic Alias Maximum, Maximum Packet
    Size), packed by paho, plus the limits a publisher must respect."""
    p = Properties(PacketTypes.CONNACK)  # type: ignore[no-untyped-call]
    p.ReceiveMaximum = 20
    p.TopicAliasMaximum = 10
    p.MaximumPacketSize = 262_144
    p.MaximumQoS = 1
    p.RetainAvailable = 0
    p.ServerKeepAlive = 15
    p.AssignedClientIdentifier = "gw-出"
    p.UserProperty = [("a", "b"), ("c", "d")]
    packed: bytes = p.pack()  # type: ignore[no-untyped-call]
    assert wire.parse_connack(b"\x00\x00" + packed, v5=True) == wire.ConnAck(
        session_present=False,
        code=0,
        receive_maximum=20,
        maximum_qos=1,
        retain_available=False,
        maximum_packet_size=262_144,
        server_keep_alive=15,
    )
    # Bytes seen from mosquitto 2.0.11 (its shipped config: max_inflight_messages 1000).
    seen = bytes.fromhex("00000b22000a27000400002103e8")
    connack = wire.parse_connack(seen, v5=True)
    assert (connack.receive_maximum, connack.maximum_packet_size) == (1000, 262_144)
    # None announced: the standard's defaults.
    assert wire.parse_connack(b"\x00\x00\x00", v5=True) == wire.ConnAck(False, 0)
    assert wire.parse_connack(b"\x00\x87", v5=True) == wire.ConnAck(False, 0x87)


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\x00\x03\x21\x00\x00",  # Receive Maximum 0 is a protocol error
        b"\x00\x00\x02\x21\x00",  # Receive Maximum cut short
        b"\x00\x00\x05\x27\x00\x00\x00\x00",  # Maximum Packet Size 0
        b"\x00\x00\x09\x21\x00\x01",  # block longer than the packet
    ],
)
def test_malformed_connack_is_a_protocol_error(body: bytes) -> None:
    with pytest.raises(wire.ProtocolError):
        wire.parse_connack(body, v5=True)


def test_reasons_for_people() -> None:
    assert wire.reason_text(0x87) == "not authorised (0x87)"
    assert wire.reason_text(0x10) == "no matching subscribers (0x10)"
    assert wire.reason_text(0xA0) == "reason code (0xa0)"
    assert wire.connack_refusal(0x86, v5=True) == "bad user name or password (0x86)"
    assert wire.connack_refusal(5, v5=False) == "not authorised"
    assert wire.connack_refusal(9, v5=False) == "return code 9"
