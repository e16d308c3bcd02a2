"""The responder app channel against a real mosquitto: PUBACK means delivered; down means
fall back, within the timeout."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from alerts.channels import Delivery, Notice, Notifier, Recipient, RetryPolicy, make_notice
from alerts.channels.mqtt_app import MqttAppChannel
from alerts.models import Alert, AlertState, Priority
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord
from gateway.mqtt.publisher import MqttPublisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for, wait_until

pytestmark = pytest.mark.mqtt

T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)
ALERT = Alert(
    id="a-1",
    kind="sos",
    priority=Priority.P1,
    state=AlertState.OPEN,
    opened_at=T0,
    updated_at=T0,
    device_id="btn-1",
    resident_id="r1",
)
RESIDENT = ResidentRecord("r1", "张秀英", phone="13800138000", building="3", unit="1", room="201")
NOTICE = make_notice(
    ALERT,
    RESIDENT,
    DeviceRecord("btn-1", DeviceType.SOS_BUTTON),
    accept_url="https://gw.example/r/tok",
    decline_url="https://gw.example/r/tok?action=decline",
)
V1 = Recipient("responder:v-1", "王志愿", responder_id="v-1", channels=("mqtt",))


@dataclass
class Subscriber:
    """A phone app stand-in: a paho client that records what arrives."""

    url_host: str
    port: int
    topic: str
    messages: list[mqtt.MQTTMessage] = field(default_factory=list)
    subscribed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="app-v-1")
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda _c, _u, msg: self.messages.append(msg)

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_subscribe(self, *_: Any) -> None:
        self.subscribed.set()

    def start(self) -> None:
        self.client.connect(self.url_host, self.port)
        self.client.loop_start()
        wait_until(self.subscribed.is_set, timeout=10, message="app subscribed")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def app(mosquitto: MosquittoServer) -> Iterator[Subscriber]:
    sub = Subscriber(mosquitto.host, mosquitto.port, "scgw/responders/v-1/alerts")
    sub.start()
    yield sub
    sub.stop()


@pytest.fixture
async def publisher(mosquitto: MosquittoServer) -> AsyncIterator[MqttPublisher]:
    pub = MqttPublisher(mosquitto.url, name="test-pub")
    await pub.start()
    assert await pub.wait_connected(10)
    yield pub
    await pub.stop()


async def test_app_receives_the_notice(app: Subscriber, publisher: MqttPublisher) -> None:
    channel = MqttAppChannel(publisher, prefix="scgw", timeout=5)
    delivery = await channel.send("mqtt", V1, NOTICE)
    assert delivery.ok, delivery
    assert "scgw/responders/v-1/alerts" in delivery.detail
    msgs = await wait_for(lambda: app.messages, timeout=5, message="notice at the app")
    msg = msgs[0]
    assert msg.topic == "scgw/responders/v-1/alerts"
    assert msg.qos == 1
    assert not msg.retain
    data = json.loads(msg.payload)
    assert data["alert_id"] == "a-1"
    assert data["kind"] == "sos"
    assert data["priority"] == "P1"
    assert data["title"].startswith("【紧急】紧急呼叫")
    assert "13800138000" in data["body"]
    assert data["resident"]["name"] == "张秀英"
    assert data["resident"]["address"] == "3号楼1单元201"
    assert data["accept_url"] == "https://gw.example/r/tok"
    assert data["decline_url"] == "https://gw.example/r/tok?action=decline"
    assert data["reply_topic"] == "scgw/responders/v-1/reply"
    assert data["responder_id"] == "v-1"


async def test_no_app_subscribed_falls_back_at_once(publisher: MqttPublisher) -> None:
    strict = MqttAppChannel(publisher, timeout=5)
    delivery = await strict.send("mqtt", V1, NOTICE)
    assert not delivery.ok
    assert not delivery.retryable
    assert "no app subscribed" in delivery.detail
    lenient = MqttAppChannel(publisher, timeout=5, require_subscriber=False)
    assert (await lenient.send("mqtt", V1, NOTICE)).ok


async def test_recipient_without_app() -> None:
    class Never:
        async def publish(
            self,
            topic: str,
            payload: bytes | str,
            qos: int = 1,
            timeout: float = 5.0,  # noqa: ASYNC109 - the Publisher protocol's signature
        ) -> bool:
            raise AssertionError("must not publish")

    channel = MqttAppChannel(Never())
    family = Recipient("contact:r1:0", "李明", role="family", channels=("mqtt",))
    assert not (await channel.send("mqtt", family, NOTICE)).retryable
    bad = Recipient("responder:x", "x", responder_id="a/+/b", channels=("mqtt",))
    assert not (await channel.send("mqtt", bad, NOTICE)).ok


async def test_a_plain_bool_publisher_is_enough() -> None:
    seen: list[tuple[str, int]] = []

    class Plain:
        async def publish(
            self,
            topic: str,
            payload: bytes | str,
            qos: int = 1,
            timeout: float = 5.0,  # noqa: ASYNC109 - the Publisher protocol's signature
        ) -> bool:
            seen.append((topic, qos))
            return True

    delivery = await MqttAppChannel(Plain(), prefix="site7").send("mqtt", V1, NOTICE)
    assert delivery.ok
    assert seen == [("site7/responders/v-1/alerts", 1)]


class Fallback:
    """A second channel that always works, to see the notifier move on."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def handles(self, spec: str) -> bool:
        return spec.startswith("sms://")

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        self.sent.append(spec)
        return Delivery(True, spec)


@pytest.mark.fault(
    "Broker down while notifying the responder app",
    checks="the channel fails within its timeout and falls back to the next channel",
)
async def test_broker_down_fails_within_timeout_and_falls_back(
    mosquitto: MosquittoServer, publisher: MqttPublisher
) -> None:
    mosquitto.stop()
    await wait_for(lambda: not publisher.connected, timeout=10, message="publisher sees it")
    channel = MqttAppChannel(publisher, timeout=0.5)
    started = time.monotonic()
    delivery = await channel.send("mqtt", V1, NOTICE)
    elapsed = time.monotonic() - started
    assert not delivery.ok
    assert elapsed < 2.0, elapsed
    fallback = Fallback()
    notifier = Notifier([channel, fallback], retry=RetryPolicy(attempts=2, backoff=0.0))
    who = Recipient("responder:v-1", "王志愿", responder_id="v-1", channels=("mqtt", "sms://1"))
    out = await notifier.notify(who, NOTICE)
    assert [d.ok for d in out.attempts] == [False, False, True]
    assert out.delivered is not None
    assert out.delivered.channel == "sms://1"


@pytest.mark.fault(
    "Broker restarted under the notification publisher",
    checks="the publisher reconnects and delivers again",
)
async def test_publisher_reconnects(
    mosquitto: MosquittoServer, app: Subscriber, publisher: MqttPublisher
) -> None:
    mosquitto.stop()
    await wait_for(lambda: not publisher.connected, timeout=10, message="publisher sees it")
    mosquitto.start()
    await wait_for(lambda: publisher.connected, timeout=20, message="publisher reconnected")
    app.stop()
    app.subscribed.clear()
    app.start()
    assert await publisher.publish("scgw/responders/v-1/alerts", b'{"n":2}', timeout=5)
    await wait_for(
        lambda: any(m.payload == b'{"n":2}' for m in app.messages),
        timeout=5,
        message="message after the broker restart",
    )
