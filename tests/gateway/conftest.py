"""Fixtures for gateway tests: a registered fleet, a running gateway, a QoS 1 publisher."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.config import Settings, load_settings
from gateway.runtime import Gateway
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

START_TIMEOUT = 20.0


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every gateway test runs on both backends."""
    if request.param == "sqlite":
        url: str = request.getfixturevalue("sqlite_url")
    else:
        url = request.getfixturevalue("pg_url")
    return url


async def register(db_url: str, ids: list[str], kind: DeviceType = DeviceType.SOS_BUTTON) -> None:
    store = open_store(db_url)
    await store.open()
    try:
        await store.upsert_devices([DeviceRecord(device_id=i, type=kind) for i in ids])
    finally:
        await store.close()


def gateway_settings(broker: MosquittoServer, db_url: str, **sections: dict[str, Any]) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "mqtt": {"url": broker.url, "client_id": "gw-test"},
        "database": {"url": db_url, "batch_max_delay": "20ms"},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(None, **base)


@dataclass
class RunningGateway:
    gateway: Gateway
    task: asyncio.Task[None]

    @property
    def store(self) -> Store:
        return self.gateway.store

    def metric(self, name: str, **labels: str) -> float:
        return self.gateway.metrics.value(name, **labels)

    async def count(self, sql: str, *params: object) -> int:
        rows = await self.store.query(sql, params)
        return int(rows[0][0])


@pytest.fixture
async def start_gateway() -> AsyncIterator[Any]:
    """``await start_gateway(settings)`` → a RunningGateway, stopped after the test."""
    running: list[RunningGateway] = []

    async def start(settings: Settings) -> RunningGateway:
        gateway = Gateway(settings, http=False)
        task = asyncio.create_task(gateway.run())
        started = asyncio.create_task(gateway.started.wait())
        done, _ = await asyncio.wait(
            {task, started}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if task in done:
            started.cancel()
            task.result()
        assert started in done, "gateway did not start"
        for lane in gateway.parts.lanes:
            await wait_for(lambda lane=lane: lane.connected, timeout=10, message="lane up")
        item = RunningGateway(gateway, task)
        running.append(item)
        return item

    yield start
    for item in running:
        item.gateway.request_stop()
        await asyncio.wait_for(item.task, 20)


class Publisher:
    """A device-side QoS 1 publisher that can wait until the broker has every message."""

    def __init__(self, url: str, client_id: str = "") -> None:
        host_port = url.removeprefix("mqtt://")
        host, _, port = host_port.partition(":")
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self._acked = 0
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        self.client.connect(host, int(port))
        self.client.loop_start()
        self.sent = 0

    def _on_publish(self, *_: object) -> None:
        with self._lock:
            self._acked += 1

    @property
    def acked(self) -> int:
        with self._lock:
            return self._acked

    def raw(self, topic: str, payload: bytes, *, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain)
        self.sent += 1

    def json(self, topic: str, body: object, *, retain: bool = False) -> None:
        self.raw(topic, orjson.dumps(body), retain=retain)

    async def flushed(self, within: float = 30.0) -> None:
        await wait_for(
            lambda: self.acked >= self.sent, timeout=within, message="broker acked all publishes"
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def publisher(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    pub = Publisher(mosquitto.url, "test-device-side")
    yield pub
    pub.close()
