"""The gateway's MQTT publisher against a real mosquitto (and the demo's amqtt): a publish
returns when the broker has the message, says why when it does not, never waits past its
deadline and never stalls the event loop — whatever the broker does."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.channels.mqtt_app import PubAck
from gateway.embedded_broker import EmbeddedBroker, free_port
from gateway.mqtt import wire
from gateway.mqtt.publisher import MqttPublisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for, wait_until

pytestmark = pytest.mark.mqtt

# Generous: the bound proves "at its deadline, not later", on a loaded 2-core machine.
SLACK = 1.5
# A loop blocked on a socket would lag by seconds; a healthy one on a busy machine, by a few ms.
MAX_LAG = 0.5


@dataclass
class App:
    """A subscriber that records what arrives: paho, the reference client (its own thread)."""

    host: str
    port: int
    topic: str
    v5: bool = True
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        protocol = mqtt.MQTTv5 if self.v5 else mqtt.MQTTv311
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_connect = lambda c, *_: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def start(self) -> App:
        self.client.connect(self.host, self.port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, timeout=10, message="app subscribed")
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class LagMonitor:
    """How late a 10 ms sleep wakes up, at worst, while it runs: the event loop's health."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.01)
            self.worst = max(self.worst, loop.time() - start - 0.01)

    def __enter__(self) -> LagMonitor:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


@contextmanager
def paused(broker: MosquittoServer) -> Iterator[int]:
    """The broker process stopped (SIGSTOP): its sockets accept, nothing is read or answered.
    Always continued afterwards, so the fixture can stop it."""
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed meanwhile
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
async def publisher(mosquitto: MosquittoServer) -> AsyncIterator[MqttPublisher]:
    pub = MqttPublisher(mosquitto.url, name="test-pub")
    await pub.start()
    assert await pub.wait_connected(10)
    yield pub
    await pub.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_acked_publish_reaches_the_subscriber(
    mosquitto: MosquittoServer, protocol: Any
) -> None:
    app = App(mosquitto.host, mosquitto.port, "scgw/+/cmd").start()
    try:
        async with MqttPublisher(mosquitto.url, client_id="pub-1", protocol=protocol) as pub:
            ack = await pub.publish_acked("scgw/btn-1/cmd", '{"cmd":"alert_received","n":"救"}')
            assert ack.ok, ack
            assert ack.reason == "acknowledged"
            assert not ack.no_subscribers
            msgs = await wait_for(lambda: app.messages, timeout=5, message="at the app")
            assert msgs[0].topic == "scgw/btn-1/cmd"
            assert msgs[0].payload.decode() == '{"cmd":"alert_received","n":"救"}'
            assert msgs[0].qos == 1
            assert not msgs[0].retain
            # retain=True: a subscriber that comes later still gets it, flagged retained.
            assert await pub.publish_acked("scgw/btn-2/cmd", b"kept", retain=True)
        late = App(mosquitto.host, mosquitto.port, "scgw/btn-2/cmd").start()
        try:
            [kept] = await wait_for(lambda: late.messages, timeout=5, message="retained")
            assert kept.payload == b"kept"
            assert kept.retain
        finally:
            late.stop()
    finally:
        app.stop()
    # Clean start: the broker keeps no session for the publisher (mosquitto logs c1).
    assert f"as pub-1 ({'p5' if protocol == '5' else 'p2'}, c1," in mosquitto.log_text()


async def test_no_subscribers_is_ok_and_said(
    mosquitto: MosquittoServer, publisher: MqttPublisher
) -> None:
    ack = await publisher.publish_acked("scgw/responders/v-9/alerts", b"{}")
    assert ack.ok
    assert ack.no_subscribers
    assert "no matching subscribers" in ack.reason
    # 3.1.1 cannot tell: acked, no more said.
    async with MqttPublisher(mosquitto.url, protocol="3.1.1") as old:
        ack = await old.publish_acked("scgw/responders/v-9/alerts", b"{}")
        assert ack.ok
        assert not ack.no_subscribers


async def test_acl_refusal_is_a_failure() -> None:
    """mosquitto's acl_file (anonymous clients get the lines before any ``user``): a v5
    PUBACK 0x87 is a failed publish. mosquitto 2.0 then also drops the connection ("Bad
    socket read/write", eclipse-mosquitto/mosquitto#2579): the publisher reconnects and the
    next publish goes through."""
    with MosquittoServer() as broker:
        # In the broker's own folder: it may drop to its own user before reading the file.
        acl = broker.root_dir / "acl"
        acl.write_text("topic readwrite scgw/+/cmd\n")
        acl.chmod(0o644)
        broker._extra_config.append(f"acl_file {acl}")  # known only once the folder exists
        broker.start()
        app = App(broker.host, broker.port, "scgw/+/cmd").start()
        try:
            async with MqttPublisher(broker.url) as pub:
                refused = await pub.publish_acked("scgw/responders/v-1/alerts", b"{}")
                assert not refused.ok
                assert refused.reason == "refused by the broker: not authorised (0x87)"
                # What was sent right behind it may be lost with that connection (a caller
                # falls back or retries); once reconnected, publishes go through.
                await wait_for(
                    lambda: pub.publish("scgw/btn-1/cmd", b"allowed", timeout=1),
                    timeout=15,
                    message="an allowed publish acked",
                )
                await wait_for(lambda: app.messages, timeout=5, message="allowed one arrives")
                assert {m.payload for m in app.messages} == {b"allowed"}
        finally:
            app.stop()


async def test_over_the_brokers_packet_size_is_refused_before_sending(
    publisher: MqttPublisher,
) -> None:
    """The shipped mosquitto.conf says max_packet_size 262144 (announced in CONNACK): sent
    anyway, the broker would drop the connection and every publish in flight with it."""
    ack = await publisher.publish_acked("scgw/btn-1/cmd", b"x" * 300_000)
    assert not ack.ok
    assert "maximum packet size (262144)" in ack.reason
    assert await publisher.publish("scgw/btn-1/cmd", b"small")
    assert publisher.connects == 1


async def test_bad_input_is_refused_at_once(publisher: MqttPublisher) -> None:
    for topic in ("scgw/#", "scgw/+/cmd", "", "a\x00b", "x" * 70_000):
        ack = await publisher.publish_acked(topic, b"x", timeout=5)
        assert not ack.ok
        assert ack.reason.startswith("refused by the client:"), ack
    ack = await publisher.publish_acked("scgw/t", b"x", qos=2)
    assert ack.reason == "refused by the client: QoS 2 is not supported (0 or 1)"
    assert await publisher.publish_acked("scgw/t", b"x", qos=0)  # written; no ack to wait for
    assert await publisher.publish("scgw/t", b"still fine")


async def test_unstarted_and_unreachable() -> None:
    # Not started (yet): a publish waits for the connection, up to its timeout.
    idle = MqttPublisher("mqtt://127.0.0.1:1")
    assert await idle.publish_acked("t", b"x", timeout=0.1) == PubAck(
        False, "not connected to the broker within 0.1s"
    )
    async with MqttPublisher(f"mqtt://127.0.0.1:{free_port()}") as pub:
        started = time.monotonic()
        ack = await pub.publish_acked("scgw/responders/v-1/alerts", b"{}", timeout=0.3)
        assert time.monotonic() - started < 0.3 + SLACK
        assert not ack.ok
        assert ack.reason.startswith("not connected to the broker within 0.3s")
        await wait_for(lambda: pub.last_error, timeout=10, message="error shown")
        assert "cannot reach broker 127.0.0.1" in (pub.last_error or "")


@pytest.mark.fault(
    "Broker killed with publishes awaiting PUBACK",
    checks="they fail at once, not at their deadline; the publisher reconnects and delivers",
)
async def test_broker_gone_mid_publish_fails_in_flight_at_once(
    mosquitto: MosquittoServer, publisher: MqttPublisher
) -> None:
    with paused(mosquitto):
        # Sent, never answered: in flight.
        pending = [
            asyncio.create_task(publisher.publish_acked("scgw/btn-1/cmd", b"{}", timeout=60))
            for _ in range(10)
        ]
        conn = publisher._conn  # what is in flight is the state under test
        assert conn is not None
        await wait_for(lambda: len(conn.inflight) == 10, timeout=5, message="all sent")
        killed = time.monotonic()
        mosquitto.kill()  # SIGKILL: the kernel closes its sockets
        acks = await asyncio.wait_for(asyncio.gather(*pending), 10)
    assert time.monotonic() - killed < 10  # at once, not at the 60 s deadline
    assert all(not a.ok and a.reason.startswith("connection lost before PUBACK") for a in acks)
    assert not publisher.connected
    # While the broker is away a publish waits for it, up to its deadline.
    ack = await publisher.publish_acked("scgw/btn-1/cmd", b"{}", timeout=0.2)
    assert ack.reason.startswith("not connected to the broker within 0.2s")
    mosquitto.start()
    app = App(mosquitto.host, mosquitto.port, "scgw/+/cmd").start()
    try:
        # Sent as soon as the publisher is back; nothing of the failed ones is replayed.
        ack = await publisher.publish_acked("scgw/btn-1/cmd", b"after", timeout=30)
        assert ack.ok, ack
        assert publisher.connects == 2
        await wait_for(lambda: app.messages, timeout=5, message="delivered after the restart")
        assert [m.payload for m in app.messages] == [b"after"]
    finally:
        app.stop()


@pytest.mark.fault(
    "Broker stops reading (process paused) under the publisher",
    checks="publishes time out at their deadline; the event loop stays responsive; "
    "delivery resumes when the broker does",
)
async def test_stalled_broker_times_out_without_stalling_the_loop(
    mosquitto: MosquittoServer, publisher: MqttPublisher
) -> None:
    """Enough bytes to fill the socket buffers on both ends: the transport pauses writing and
    the rest wait for room, each until its own deadline."""
    timeout = 1.0
    with LagMonitor() as lag, paused(mosquitto):
        started = time.monotonic()
        acks = await asyncio.gather(
            *(
                publisher.publish_acked("scgw/btn-1/cmd", b"x" * 200_000, timeout=timeout)
                for _ in range(150)
            )
        )
        elapsed = time.monotonic() - started
        worst = lag.worst
    assert not any(a.ok for a in acks)
    reasons = {a.reason for a in acks}
    assert reasons <= {
        "no PUBACK within 1s",
        "the broker read nothing more for 1s (send buffer full)",
        "no room within 1s: 100 publishes await PUBACK",
    }, reasons
    assert "the broker read nothing more for 1s (send buffer full)" in reasons
    assert elapsed < timeout + SLACK
    assert worst < MAX_LAG, worst
    # Continued: it reads what was sent, and delivers again.
    ack = await publisher.publish_acked("scgw/btn-1/cmd", b"after", timeout=30)
    assert ack.ok, ack
    assert publisher.connects == 1


async def test_silent_listener_times_out_without_stalling_the_loop() -> None:
    """A socket that accepts TCP (the kernel's backlog) and never reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        async with MqttPublisher(f"mqtt://127.0.0.1:{port}") as pub:
            with LagMonitor() as lag:
                started = time.monotonic()
                acks = await asyncio.gather(
                    *(pub.publish_acked("t", b"x" * 10_000, timeout=1.0) for _ in range(50))
                )
                elapsed = time.monotonic() - started
            assert {a.reason for a in acks} == {"not connected to the broker within 1s"}
            assert elapsed < 1.0 + SLACK
            assert lag.worst < MAX_LAG, lag.worst


class ScriptedBroker:
    """A peer that answers CONNECT with a given CONNACK, records each PUBLISH's packet id and
    acks only when told: for what a real broker will not show (mosquitto does not enforce
    Receive Maximum for QoS 1) or will not send (garbage, refusals)."""

    def __init__(self, connack: bytes) -> None:
        self.connack = connack
        self.sessions = 0
        self.outstanding: list[int] = []
        self.most_outstanding = 0
        self.received = 0
        self._writer: asyncio.StreamWriter | None = None
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedBroker:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"mqtt://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        self._writer = writer
        try:
            while True:
                first = (await reader.readexactly(1))[0]
                length, shift = 0, 0
                while True:
                    byte = (await reader.readexactly(1))[0]
                    length |= (byte & 0x7F) << shift
                    shift += 7
                    if not byte & 0x80:
                        break
                body = await reader.readexactly(length)
                kind = first >> 4
                if kind == wire.PacketType.CONNECT:
                    writer.write(self.connack)
                elif kind == wire.PacketType.PUBLISH:
                    (topic_len,) = struct.unpack_from("!H", body, 0)
                    (packet_id,) = struct.unpack_from("!H", body, 2 + topic_len)
                    self.received += 1
                    self.outstanding.append(packet_id)
                    self.most_outstanding = max(self.most_outstanding, len(self.outstanding))
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def send(self, data: bytes) -> None:
        assert self._writer is not None
        self._writer.write(data)

    def ack_oldest(self) -> None:
        self.send(b"\x40\x03" + struct.pack("!HB", self.outstanding.pop(0), 0))


async def test_receive_maximum_from_connack_bounds_what_is_in_flight() -> None:
    # v5 CONNACK: accepted, properties: Receive Maximum (0x21) = 2
    async with (
        ScriptedBroker(b"\x20\x06\x00\x00\x03\x21\x00\x02") as broker,
        MqttPublisher(broker.url) as pub,
    ):
        pending = [
            asyncio.create_task(pub.publish_acked("t", str(i).encode(), timeout=30))
            for i in range(5)
        ]
        await wait_for(lambda: broker.received == 2, timeout=5, message="two sent")
        assert len(pub._waiters) == 3  # the other three wait for room, unsent
        broker.send(b"\x40\x02\x03\xe7")  # a PUBACK for an id not in flight: ignored
        for sent in range(3, 6):
            broker.ack_oldest()
            await wait_for(lambda n=sent: broker.received == n, timeout=5, message="next")
        broker.ack_oldest()
        broker.ack_oldest()
        acks = await asyncio.gather(*pending)
    assert all(a.ok for a in acks)
    assert broker.most_outstanding == 2
    assert broker.sessions == 1


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        # a length no MQTT packet can have
        (b"\x30\xff\xff\xff\xff\x01", "malformed data from the broker"),
        # a v5 PUBACK whose property block runs past its end
        (b"\x40\x04\x00\x01\x87\x05", "malformed data from the broker"),
        # v5 DISCONNECT: server busy
        (b"\xe0\x02\x89\x00", "broker disconnected us: server busy (0x89)"),
    ],
)
async def test_broker_trouble_fails_in_flight_at_once_and_reconnects(
    sent: bytes, reason: str
) -> None:
    # CONNACK accepted (v5, no properties), then what the broker sends mid-publish.
    async with (
        ScriptedBroker(b"\x20\x03\x00\x00\x00") as broker,
        MqttPublisher(broker.url) as pub,
    ):
        assert await pub.wait_connected(10)
        task = asyncio.create_task(pub.publish_acked("t", b"x", timeout=30))
        await wait_for(lambda: broker.received == 1, timeout=5, message="sent")
        broker.send(sent)
        ack = await asyncio.wait_for(task, 10)
        assert not ack.ok
        assert reason in ack.reason
        await wait_for(lambda: broker.sessions >= 2, timeout=15, message="reconnected")


async def test_refused_connection_is_reported() -> None:
    # v5 CONNACK: bad user name or password
    async with (
        ScriptedBroker(b"\x20\x03\x00\x86\x00") as broker,
        MqttPublisher(broker.url.replace("//", "//gw:wrong@")) as pub,
    ):
        await wait_for(
            lambda: "bad user name or password" in (pub.last_error or ""),
            timeout=10,
            message="refusal shown",
        )
        ack = await pub.publish_acked("t", b"x", timeout=0.2)
        assert not pub.connected
        assert "bad user name or password" in ack.reason


async def test_stop_ends_waiting_and_in_flight_publishes_at_once(
    mosquitto: MosquittoServer,
) -> None:
    pub = MqttPublisher(mosquitto.url, max_inflight=2)
    await pub.start()
    assert await pub.wait_connected(10)
    with paused(mosquitto):
        pending = [asyncio.create_task(pub.publish_acked("t", b"x", timeout=60)) for _ in range(4)]
        await wait_for(lambda: len(pub._waiters) == 2, timeout=5, message="2 sent, 2 waiting")
        await pub.stop()
        acks = await asyncio.wait_for(asyncio.gather(*pending), 5)
    reasons = sorted(a.reason for a in acks)
    assert reasons == [
        "connection lost before PUBACK (publisher stopped)",
        "connection lost before PUBACK (publisher stopped)",
        "publisher stopped",
        "publisher stopped",
    ]
    assert await pub.publish_acked("t", b"x") == PubAck(False, "publisher stopped")


async def test_mqtt_311_against_the_demo_broker() -> None:
    """The embedded amqtt broker of ``scgw demo`` speaks 3.1.1 only."""
    broker = EmbeddedBroker(free_port())
    await broker.start()
    try:
        app = App(broker.host, broker.port, "scgw/+/cmd", v5=False)
        await asyncio.to_thread(app.start)
        try:
            async with MqttPublisher(f"mqtt://127.0.0.1:{broker.port}", protocol="3.1.1") as pub:
                ack = await pub.publish_acked("scgw/btn-1/cmd", b'{"cmd":"ping"}')
                assert ack.ok, ack
                await wait_for(lambda: app.messages, timeout=5, message="at the subscriber")
                assert app.messages[0].payload == b'{"cmd":"ping"}'
        finally:
            await asyncio.to_thread(app.stop)
    finally:
        await broker.stop()
