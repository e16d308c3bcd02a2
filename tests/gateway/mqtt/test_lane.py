"""The ingest lane against a real mosquitto: order, manual acks, the persistent session, stale
acks after a reconnect, a broker that is down at start, and a peer that sends garbage."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from gateway.mqtt.lane import Inbound, MqttLane
from tests.gateway.conftest import Publisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

TOPIC = "scgw/{}/telemetry"


def make_lane(url: str, *, client_id: str = "lane-test", protocol: str = "5") -> MqttLane:
    return MqttLane(
        name="telemetry",
        url=url,
        client_id=client_id,
        subscriptions=["scgw/+/telemetry"],
        receive_maximum=100,
        session_expiry=600,
        keepalive=5,
        protocol=protocol,
    )


async def receive(
    lane: MqttLane, count: int, within: float = 15.0, *, ack: bool = False
) -> list[Inbound]:
    """``count`` messages; ``ack`` acks each batch as it comes (the broker sends no more than
    Receive Maximum unacked messages)."""
    got: list[Inbound] = []

    async def gather() -> None:
        while len(got) < count:
            batch = await lane.get_batch(count - len(got), 0.05)
            if ack:
                assert all(lane.ack(m) for m in batch)
            got.extend(batch)

    await asyncio.wait_for(gather(), within)
    return got


async def nothing_more(lane: MqttLane, publisher: Publisher) -> None:
    """Proves the queue is empty by sending a marker and seeing it arrive first."""
    publisher.raw(TOPIC.format("marker"), b"end")
    await publisher.flushed()
    [marker] = await receive(lane, 1)
    assert marker.topic == TOPIC.format("marker")
    lane.ack(marker)


@pytest.fixture
async def started(mosquitto: MosquittoServer) -> AsyncIterator[MqttLane]:
    lane = make_lane(mosquitto.url)
    await lane.start()
    await wait_for(lambda: lane.connected, timeout=10, message="lane subscribed")
    yield lane
    await lane.stop()


@pytest.mark.parametrize("protocol", ["5", "3"])
async def test_messages_arrive_in_order_and_acked_ones_do_not_come_back(
    mosquitto: MosquittoServer, protocol: str
) -> None:
    lane = make_lane(mosquitto.url, protocol=protocol)
    await lane.start()
    await wait_for(lambda: lane.connected, timeout=10, message="lane subscribed")
    publisher = Publisher(mosquitto.url)
    try:
        for i in range(500):
            publisher.raw(TOPIC.format("d1"), str(i).encode())
        await publisher.flushed()
        got = await receive(lane, 500, ack=True)
        assert [int(m.payload) for m in got] == list(range(500))
        await lane.stop()
        # Same client id again: the session is resumed and holds nothing unacked.
        lane = make_lane(mosquitto.url, protocol=protocol)
        await lane.start()
        await wait_for(lambda: lane.connected, timeout=10, message="lane resubscribed")
        await nothing_more(lane, publisher)
    finally:
        publisher.close()
        await lane.stop()


async def test_unacked_messages_are_redelivered_after_a_restart(mosquitto: MosquittoServer) -> None:
    lane = make_lane(mosquitto.url)
    await lane.start()
    await wait_for(lambda: lane.connected, timeout=10, message="lane subscribed")
    publisher = Publisher(mosquitto.url)
    try:
        for i in range(50):
            publisher.raw(TOPIC.format("d1"), str(i).encode())
        await publisher.flushed()
        got = await receive(lane, 50)
        for message in got[:20]:
            lane.ack(message)
        await lane.stop()  # like a crash after storing only the first 20
        lane = make_lane(mosquitto.url)
        await lane.start()
        again = await receive(lane, 30)
        assert sorted(int(m.payload) for m in again) == list(range(20, 50))
        for message in again:
            lane.ack(message)
        await nothing_more(lane, publisher)
    finally:
        publisher.close()
        await lane.stop()


async def test_an_ack_for_a_dropped_connection_is_not_sent(
    started: MqttLane, mosquitto: MosquittoServer
) -> None:
    lane = started
    publisher = Publisher(mosquitto.url)
    try:
        publisher.raw(TOPIC.format("d1"), b"first")
        await publisher.flushed()
        [old] = await receive(lane, 1)
        connects = lane.connects
        conn = lane._conn  # cutting the socket is the fault under test
        assert conn is not None
        assert conn.transport is not None
        conn.transport.abort()
        await wait_for(lambda: lane.connects > connects, timeout=15, message="lane reconnected")
        # Its packet id may name another message on the new connection: refused.
        assert lane.ack(old) is False
        [again] = await receive(lane, 1)
        assert again.payload == b"first"
        assert again.generation != old.generation
        assert lane.ack(again) is True
        await nothing_more(lane, publisher)
    finally:
        publisher.close()


async def test_broker_down_at_start_then_up(mosquitto: MosquittoServer) -> None:
    mosquitto.stop()
    changes: list[bool] = []
    lane = MqttLane(
        name="event",
        url=mosquitto.url,
        client_id="late",
        subscriptions=["scgw/+/event"],
        receive_maximum=10,
        session_expiry=600,
        on_connection_change=lambda _name, up: changes.append(up),
    )
    await lane.start()
    try:
        await wait_for(lambda: lane.last_error is not None, timeout=10, message="error shown")
        assert not lane.connected
        assert f"cannot reach broker 127.0.0.1:{mosquitto.port}" in (lane.last_error or "")
        mosquitto.start()
        await wait_for(
            lambda: lane.connected, timeout=30, message="connected once the broker is up"
        )
        assert lane.last_error is None
        assert changes[-1] is True
    finally:
        await lane.stop()
    assert changes[-1] is False


async def test_garbage_from_the_peer_drops_the_connection_not_the_lane() -> None:
    """A peer that answers CONNACK and SUBACK, then sends bytes that are not MQTT."""
    sessions = 0

    async def fake_broker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sessions
        sessions += 1
        await reader.read(1024)  # CONNECT
        writer.write(b"\x20\x03\x00\x00\x00")  # CONNACK v5, accepted, no properties
        await reader.read(1024)  # SUBSCRIBE
        writer.write(b"\x90\x04\x00\x01\x00\x01")  # SUBACK, QoS 1 granted
        writer.write(b"\x30\xff\xff\xff\xff\x01")  # a length no MQTT packet can have
        await writer.drain()
        await reader.read(1024)
        writer.close()

    server = await asyncio.start_server(fake_broker, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lane = make_lane(f"mqtt://127.0.0.1:{port}")
    await lane.start()
    try:
        await wait_for(lambda: sessions >= 2, timeout=15, message="lane reconnected after garbage")
        assert lane.depth == 0
    finally:
        await lane.stop()
        server.close()
        await server.wait_closed()


async def test_refused_connection_is_reported() -> None:
    async def refusing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1024)
        writer.write(b"\x20\x03\x00\x86\x00")  # v5 CONNACK: bad user name or password
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refusing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    lane = make_lane(f"mqtt://gw:wrong@127.0.0.1:{port}")
    await lane.start()
    try:
        await wait_for(
            lambda: "bad user name or password" in (lane.last_error or ""),
            timeout=10,
            message="refusal reason shown",
        )
        assert not lane.connected
    finally:
        await lane.stop()
        server.close()
        await server.wait_closed()


async def test_put_back_returns_only_unacked_messages_in_order(
    started: MqttLane, mosquitto: MosquittoServer
) -> None:
    lane = started
    publisher = Publisher(mosquitto.url)
    try:
        for i in range(10):
            publisher.raw(TOPIC.format("d1"), str(i).encode())
        await publisher.flushed()
        got = await receive(lane, 10)
        for message in got[:4]:
            assert lane.ack(message)
        assert lane.ack(got[0]) is False  # an id is acked at most once
        # The consumer failed: everything goes back, but only 4–9 were still unacked.
        assert lane.put_back(got) == 6
        again = await receive(lane, 6)
        assert [int(m.payload) for m in again] == list(range(4, 10))
        assert all(lane.ack(m) for m in again)
        await nothing_more(lane, publisher)
    finally:
        publisher.close()


async def test_skipped_messages_come_back_after_a_reconnect(
    started: MqttLane, mosquitto: MosquittoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.mqtt.lane.REDELIVER_AFTER", 0.2)
    lane = started
    publisher = Publisher(mosquitto.url)
    try:
        publisher.raw(TOPIC.format("d1"), b"troublesome")
        publisher.raw(TOPIC.format("d1"), b"fine")
        await publisher.flushed()
        trouble, fine = await receive(lane, 2)
        lane.skip([trouble])  # its consumer keeps failing: held back, not acked
        assert lane.ack(fine)
        [again] = await receive(lane, 1)
        assert again.payload == b"troublesome"
        assert again.dup
        assert lane.skipped == 1
        assert lane.ack(again)
        await nothing_more(lane, publisher)
    finally:
        publisher.close()


async def test_a_held_lane_reads_nothing_until_released(mosquitto: MosquittoServer) -> None:
    """While a press is handled the telemetry lane stops reading; the broker keeps the rest."""
    telemetry = make_lane(mosquitto.url, client_id="held-telemetry")
    events = MqttLane(
        name="event",
        url=mosquitto.url,
        client_id="held-events",
        subscriptions=["scgw/+/event"],
        receive_maximum=10,
        session_expiry=600,
    )
    await telemetry.start()
    await events.start()
    publisher = Publisher(mosquitto.url)
    try:
        await wait_for(lambda: telemetry.connected and events.connected, timeout=10, message="up")
        telemetry.hold(True)
        for i in range(50):
            publisher.raw(TOPIC.format("d1"), str(i).encode())
        publisher.raw("scgw/btn-1/event", b"press")  # published after the telemetry
        await publisher.flushed()
        [press] = await receive(events, 1)
        assert press.payload == b"press"
        assert telemetry.depth == 0  # nothing read while held
        telemetry.hold(False)
        got = await receive(telemetry, 50, ack=True)
        assert [int(m.payload) for m in got] == list(range(50))
    finally:
        publisher.close()
        await telemetry.stop()
        await events.stop()
