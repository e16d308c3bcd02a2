"""A gateway with every transport switched on (native MQTT, zigbee2mqtt, a serial line over
``socket://``, a DC-09 receiver), a webhook standing in for volunteers' phones, and one
SOS-capable device per transport — so a promise is tested once, parametrised over transports.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from devices import dc09
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from gateway.config import Settings, load_settings
from gateway.runtime import Gateway
from gateway.storage.factory import open_store
from simulators.serial_device import SerialSimulator, TcpLine
from tests.gateway.conftest import Publisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver, running_receiver

TRANSPORTS = ("mqtt", "zigbee2mqtt", "serial", "sia")
BUS_ADDR = 0x00001001
SIA_ACCOUNT = "1234"
SIA_ZONE = "7"


def sos_device(transport: str, *, resident: str | None = "r-1") -> DeviceRecord:
    """The device that presses on ``transport``, registered at its address there."""
    if transport == "mqtt":
        return DeviceRecord("btn-mqtt", DeviceType.SOS_BUTTON, resident_id=resident)
    if transport == "zigbee2mqtt":
        return DeviceRecord(
            "btn-zigbee", DeviceType.SOS_BUTTON, resident_id=resident, zigbee_name="sos_z"
        )
    if transport == "serial":
        return DeviceRecord(
            "btn-serial",
            DeviceType.SOS_BUTTON,
            resident_id=resident,
            serial_port="bus1",
            serial_addr=BUS_ADDR,
        )
    return DeviceRecord(
        "pendant-sia",
        DeviceType.PENDANT,
        resident_id=resident,
        sia_account=SIA_ACCOUNT,
        sia_zone=SIA_ZONE,
    )


def hook(phones: Receiver, responder_id: str) -> str:
    return f"json://127.0.0.1:{phones.port}/{responder_id}"


async def seed(db_url: str, phones: Receiver, devices: list[DeviceRecord]) -> None:
    store = open_store(db_url)
    await store.open()
    try:
        await store.upsert_responders(
            [
                ResponderRecord("v-1", "王志愿", "volunteer", channels=(hook(phones, "v-1"),)),
                ResponderRecord("desk", "服务站值班", "duty", channels=(hook(phones, "desk"),)),
            ]
        )
        await store.upsert_residents([ResidentRecord("r-1", "张秀英", responders=("v-1",))])
        await store.upsert_devices(devices)
    finally:
        await store.close()


def settings_for(mosquitto: MosquittoServer, db_url: str, line: TcpLine, **extra: Any) -> Settings:
    """The default config but for where things are; ``extra`` sections are merged in."""
    http = free_port()
    sections: dict[str, dict[str, Any]] = {
        "mqtt": {"url": mosquitto.url, "client_id": "gw-intake"},
        "database": {"url": db_url},
        "http": {"bind": f"127.0.0.1:{http}", "public_url": f"http://127.0.0.1:{http}"},
        "serial": {"ports": [{"name": "bus1", "url": line.url}]},
        "sia": {"bind": f"127.0.0.1:{free_port()}", "accounts": [{"account": SIA_ACCOUNT}]},
        "alerts": {
            "policies": {"P1": {"steps": [{"targets": ["assigned"], "ack_timeout": "10m"}]}}
        },
    }
    for name, values in extra.items():
        sections[name] = {**sections.get(name, {}), **values}
    return load_settings(None, **sections)


@dataclass
class Site:
    """A running gateway with a device-side client for every transport."""

    gateway: Gateway
    publisher: Publisher
    serial: SerialSimulator
    sia_port: int
    phones: Receiver
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _seq: int = 0

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def press(self, transport: str) -> float:
        """Press the SOS device of ``transport``; returns ``time.perf_counter()`` at the press
        (the webhook stamps arrivals with the same clock)."""
        seq = self.next_seq()
        started = time.perf_counter()
        if transport == "mqtt":
            self.publisher.json("scgw/btn-mqtt/event", {"id": f"p-{seq}", "type": "sos"})
        elif transport == "zigbee2mqtt":
            self.publisher.json("zigbee2mqtt/sos_z", {"action": "sos", "battery": 90})
        elif transport == "serial":
            # Ack read back in the background: the press is timed to the page, not the ack.
            self._tasks.append(asyncio.create_task(self.serial.press(BUS_ADDR)))
        else:
            self._tasks.append(asyncio.create_task(self._sia_press(f"{seq:04d}")))
        return started

    async def _sia_press(self, seq: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.sia_port)
        try:
            writer.write(
                dc09.build("SIA-DCS", seq, SIA_ACCOUNT, data=f"#{SIA_ACCOUNT}|NPA{SIA_ZONE}")
            )
            await writer.drain()
            await asyncio.wait_for(reader.read(4096), 30)  # the ACK, once it is durable
        finally:
            writer.close()

    async def finish(self) -> None:
        for task in self._tasks:
            await asyncio.wait_for(task, 30)


@pytest.fixture
async def phones() -> AsyncIterator[Receiver]:
    """Every responder's channel is ``json://127.0.0.1:PORT/<responder id>``."""
    async with running_receiver() as receiver:
        yield receiver


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def site_factory(mosquitto: MosquittoServer, phones: Receiver) -> AsyncIterator[SiteFactory]:
    """``await site_factory(db_url, **settings_sections)`` → a running Site (seed first)."""
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(db_url: str, **extra: Any) -> Site:
        line = await TcpLine.listen()
        cleanups.append(_closer(line.close))
        gateway = Gateway(settings_for(mosquitto, db_url, line, **extra), http=True)
        task = asyncio.create_task(gateway.run())

        async def stop() -> None:
            gateway.request_stop()
            await asyncio.wait_for(task, 30)

        cleanups.append(stop)
        await wait_for(gateway.ingesting.is_set, timeout=30, message="gateway ingesting")
        reader = gateway.parts.serial["bus1"]
        await wait_for(lambda: reader.state.open, timeout=10, message="serial port open")
        sia = gateway.parts.sia
        assert sia is not None
        await wait_for(lambda: sia.port, timeout=10, message="SIA receiver listening")
        assert sia.port is not None
        publisher = Publisher(mosquitto.url, "intake-devices")
        cleanups.append(_closer(publisher.close))
        sim = SerialSimulator(line, [BUS_ADDR], ack_timeout=0.5, max_tries=60)
        sim_task = asyncio.create_task(sim.run_reader())
        cleanups.append(_canceller(sim_task))
        return Site(gateway, publisher, sim, sia.port, phones)

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


def _closer(close: Callable[[], None]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        close()

    return run


def _canceller(task: asyncio.Task[Any]) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return run
