"""Fault-injection tests: shared pieces.

A ``Stream`` publishes QoS 1 telemetry and events like a fleet does, each message with its own
identity, so the views can be checked for exactly-once; ``counts`` reads them. Gateways run
either in-process with HTTP on (``LiveGateway``: /readyz and /metrics over real HTTP) or as a
subprocess (``tests.harness.gateway_process``) when a test kills them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.config import Settings, load_settings
from gateway.runtime import Gateway
from gateway.storage.base import Store
from gateway.storage.factory import open_store
from tests.gateway.conftest import Publisher

# Every fault test runs on both backends, like the gateway tests.
from tests.gateway.conftest import db_url as db_url
from tests.harness.gateway_process import GatewayProcess
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

T0 = datetime.now(UTC) - timedelta(hours=1)


@dataclass
class Stream:
    """Telemetry and events from ``devices``, paced at ``rate`` msg/s in a thread.

    Message ``n`` (global over the stream's life) is an event with id ``ev-n`` every
    ``event_every`` messages, else one telemetry reading stamped T0 + n ms: every message
    makes exactly one row with its own identity.
    """

    publisher: Publisher
    devices: list[str]
    rate: float = 2000.0
    event_every: int = 20
    sent_telemetry: int = 0
    sent_events: int = 0
    _next: int = 0
    _thread: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def publish(self, count: int) -> None:
        """Publish ``count`` messages now, paced (blocking)."""
        start = time.monotonic()
        for k in range(count):
            if self._stop.is_set():
                return
            n = self._next
            self._next += 1
            device = self.devices[n % len(self.devices)]
            if n % self.event_every == 0:
                self.publisher.json(f"scgw/{device}/event", {"id": f"ev-{n}", "type": "motion"})
                self.sent_events += 1
            else:
                stamp = (T0 + timedelta(milliseconds=n)).isoformat()
                self.publisher.json(
                    f"scgw/{device}/telemetry",
                    {"ts": stamp, "seq": n, "metrics": {"temperature": n % 40}},
                )
                self.sent_telemetry += 1
            ahead = (k + 1) / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)  # pacing the load generator, not waiting for a condition

    def start(self, count: int) -> None:
        """Publish ``count`` messages in the background; ``join()`` waits for the last."""
        self._thread = threading.Thread(target=self.publish, args=(count,), daemon=True)
        self._thread.start()

    async def join(self, within: float = 60.0) -> None:
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, within)
            assert not self._thread.is_alive(), "stream did not finish"
            self._thread = None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)


async def counts(store: Store) -> tuple[int, int, int, int]:
    """(readings, distinct readings, events, distinct events) in the views."""
    readings = await store.query("SELECT count(*), count(DISTINCT time) FROM v_readings")
    events = await store.query("SELECT count(*), count(DISTINCT event_id) FROM v_events")
    return (int(readings[0][0]), int(readings[0][1]), int(events[0][0]), int(events[0][1]))


async def wait_exactly_once(store: Store, stream: Stream, within: float = 60.0) -> None:
    """Every message of ``stream`` is in the views, each exactly once."""
    expected = (stream.sent_telemetry,) * 2 + (stream.sent_events,) * 2
    seen: list[tuple[int, int, int, int]] = []

    async def complete() -> bool:
        got = await counts(store)
        seen.append(got)
        return got[0] >= expected[0] and got[2] >= expected[2]

    try:
        await wait_for(complete, timeout=within, interval=0.1, message="all stored")
    except AssertionError:
        raise AssertionError(
            f"expected {expected} (readings, distinct, events, distinct) in the views within "
            f"{within:.0f}s; last seen {seen[-1] if seen else None}"
        ) from None
    assert await counts(store) == expected, "duplicates in the views"


@pytest.fixture
async def observer(db_url: str) -> AsyncIterator[Store]:
    """A second connection to the gateway's database, reading the views as an analyst would."""
    store = open_store(db_url)
    await store.open()
    yield store
    await store.close()


@dataclass
class LiveGateway:
    """An in-process gateway with its HTTP server on a real port."""

    gateway: Gateway
    task: asyncio.Task[None]
    http: httpx.AsyncClient

    async def readyz(self) -> httpx.Response | None:
        try:
            return await self.http.get("/readyz")
        except httpx.TransportError:
            return None

    async def ready_status(self, code: int) -> dict[str, Any] | None:
        """The /readyz body when its status is ``code`` (for ``wait_for``)."""
        response = await self.readyz()
        if response is None or response.status_code != code:
            return None
        body: dict[str, Any] = response.json()
        return body

    async def metrics(self) -> str:
        return (await self.http.get("/metrics")).text

    async def metric(self, sample: str) -> float | None:
        """One sample from /metrics by its full text before the value (``name{labels}``)."""
        for line in (await self.metrics()).splitlines():
            name, _, value = line.rpartition(" ")
            if name == sample:
                return float(value)
        return None


def fault_settings(mqtt_url: str, db_url: str, http_port: int, **sections: Any) -> Settings:
    base: dict[str, dict[str, Any]] = {
        "mqtt": {"url": mqtt_url, "client_id": "gw-fault"},
        "database": {"url": db_url, "batch_max_delay": "20ms"},
        "http": {"bind": f"127.0.0.1:{http_port}"},
        # The fleet here is a load generator: no per-device limit unless a test sets one.
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return load_settings(None, **base)


@pytest.fixture
async def live_gateway() -> AsyncIterator[Any]:
    """``await live_gateway(settings)`` → a LiveGateway, ready (/readyz 200); stopped after."""
    started: list[LiveGateway] = []

    async def start(settings: Settings) -> LiveGateway:
        gateway = Gateway(settings)
        task = asyncio.create_task(gateway.run())
        client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{settings.http.port}", timeout=5)
        live = LiveGateway(gateway, task, client)
        started.append(live)
        await wait_for(lambda: live.ready_status(200), timeout=30, message="gateway ready")
        return live

    yield start
    for live in started:
        live.gateway.request_stop()
        await asyncio.wait_for(live.task, 30)
        await live.http.aclose()


def write_process_config(
    path: Path, mqtt_url: str, db_url: str, http_port: int, extra: str = ""
) -> Path:
    path.write_text(
        f'[mqtt]\nurl = "{mqtt_url}"\nclient_id = "gw-fault-proc"\n'
        f'[database]\nurl = "{db_url}"\nbatch_max_delay = "20ms"\n'
        f'[http]\nbind = "127.0.0.1:{http_port}"\n' + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def gateway_process(tmp_path: Path) -> Iterator[Any]:
    """``gateway_process(mqtt_url, db_url)`` → a GatewayProcess (not started); killed after."""
    made: list[GatewayProcess] = []

    def make(mqtt_url: str, db_url: str, extra: str = "") -> GatewayProcess:
        port = free_port()
        config = write_process_config(tmp_path / "scgw.toml", mqtt_url, db_url, port, extra)
        proc = GatewayProcess(config, tmp_path / "gateway.log", port)
        made.append(proc)
        return proc

    yield make
    for proc in made:
        if proc.proc is not None and proc.proc.poll() is None:
            proc.kill()
