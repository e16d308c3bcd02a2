"""A small community, a webhook standing in for the volunteers' phones, and a gateway with
alerting, on real mosquitto and a real database."""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.models import DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from gateway.config import Settings, load_settings
from gateway.storage.factory import open_store
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.webhook import Receiver, running_receiver

LINK_RE = re.compile(r"http://127\.0\.0\.1:\d+/r/[A-Za-z0-9_-]+")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def phones() -> AsyncIterator[Receiver]:
    """Every responder's channel is ``json://127.0.0.1:PORT/<responder id>``."""
    async with running_receiver() as receiver:
        yield receiver


async def seed_community(db_url: str, phones: Receiver) -> None:
    def hook(rid: str) -> str:
        return f"json://127.0.0.1:{phones.port}/{rid}"

    store = open_store(db_url)
    await store.open()
    try:
        await store.upsert_responders(
            [
                ResponderRecord(
                    "v-1", "王志愿", "volunteer", building="3", channels=(hook("v-1"),)
                ),
                ResponderRecord(
                    "v-2", "李志愿", "volunteer", building="3", channels=(hook("v-2"),)
                ),
                ResponderRecord("duty", "服务站值班", "duty", channels=(hook("duty"),)),
            ]
        )
        await store.upsert_residents(
            [
                ResidentRecord(
                    "r1",
                    "张秀英",
                    phone="13800000000",
                    building="3",
                    unit="1",
                    room="201",
                    lives_alone=True,
                    medical_notes="高血压",
                    contacts=(Contact("儿子", "13900000000"),),
                    responders=("v-1",),
                )
            ]
        )
        await store.upsert_devices(
            [
                DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id="r1", building="3"),
                DeviceRecord("smoke-1", DeviceType.SMOKE_DETECTOR, resident_id="r1"),
                DeviceRecord("water-1", DeviceType.WATER_SENSOR, resident_id="r1"),
                DeviceRecord("th-1", DeviceType.TEMP_HUMIDITY, resident_id="r1"),
                DeviceRecord("motion-1", DeviceType.MOTION_SENSOR, resident_id="r1"),
            ]
        )
    finally:
        await store.close()


def alert_settings(broker: MosquittoServer, db_url: str, http_port: int, **alerts: Any) -> Settings:
    """P1: the assigned volunteer first, then the desk. Short timeouts only where a test
    waits for them."""
    policies = alerts.pop(
        "policies",
        {
            "P1": {
                "steps": [
                    {"targets": ["assigned"], "ack_timeout": "60s"},
                    {"targets": ["role:duty"], "ack_timeout": "10m"},
                ]
            },
            "P2": {"steps": [{"targets": ["assigned"], "ack_timeout": "60s"}]},
        },
    )
    return load_settings(
        None,
        mqtt={"url": broker.url, "client_id": "gw-alerts"},
        database={"url": db_url, "batch_max_delay": "10ms"},
        http={"bind": f"127.0.0.1:{http_port}", "public_url": f"http://127.0.0.1:{http_port}"},
        alerts={"policies": policies, **alerts},
    )


@dataclass
class DeviceInbox:
    """What the gateway told a device on ``scgw/{id}/cmd``."""

    client: mqtt.Client
    messages: list[dict[str, Any]]

    def commands(self) -> list[str]:
        return [m["cmd"] for m in self.messages]


@pytest.fixture
def device_inbox(mosquitto: MosquittoServer) -> Iterator[DeviceInbox]:
    lock = threading.Lock()
    messages: list[dict[str, Any]] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="inbox")

    def on_message(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            messages.append({"topic": msg.topic, **orjson.loads(msg.payload)})

    subscribed = threading.Event()
    client.on_message = on_message
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", mosquitto.port)
    client.subscribe("scgw/+/cmd", qos=1)
    client.loop_start()
    assert subscribed.wait(10)
    yield DeviceInbox(client, messages)
    client.disconnect()
    client.loop_stop()


def accept_link(request_body: dict[str, Any]) -> str:
    text = f"{request_body.get('title', '')}\n{request_body.get('message', '')}"
    match = LINK_RE.search(text)
    assert match is not None, f"no accept link in {text!r}"
    return match.group(0)


def http_port() -> int:
    return free_port()
