"""Broker restart and network cuts while telemetry and events flow: the gateway reconnects,
resumes its persistent session, shows the outage on /readyz and /metrics, and every message
ends up in the views exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devices.models import DeviceType
from gateway.storage.base import Store
from tests.faults.conftest import LiveGateway, Stream, counts, fault_settings, wait_exactly_once
from tests.gateway.conftest import Publisher, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.proxy import TcpProxy
from tests.harness.waiting import wait_for

DEVICES = [f"m-{i}" for i in range(10)]
BEFORE = 1500  # messages published before the fault, part of them still in flight at it
DURING = 600  # published while the gateway cannot reach the broker
AFTER = 600


@pytest.fixture
def devices(mosquitto: MosquittoServer) -> Iterator[Publisher]:
    publisher = Publisher(mosquitto.url, "fault-fleet")
    yield publisher
    publisher.close()


async def _lanes_down(live: LiveGateway) -> dict[str, Any] | None:
    """The /readyz body once every MQTT lane reports itself disconnected."""
    body = await live.ready_status(503)
    if body is None or body["checks"]["broker"]["ok"]:
        return None
    lanes = body["checks"]["broker"]["lanes"]
    return body if not any(lane["connected"] for lane in lanes.values()) else None


async def _connected(live: LiveGateway, lane: str) -> float | None:
    return await live.metric(f'scgw_mqtt_connected{{lane="{lane}"}}')


async def _outage_is_visible(live: LiveGateway) -> None:
    body = await wait_for(
        lambda: _lanes_down(live), timeout=30, message="/readyz shows every MQTT lane down"
    )
    assert {"event", "telemetry"} <= set(body["checks"]["broker"]["lanes"])
    assert body["checks"]["database"]["ok"] is True  # only the broker is gone
    assert (await live.http.get("/healthz")).status_code == 200
    assert await _connected(live, "event") == 0
    assert await _connected(live, "telemetry") == 0


async def _recovered(live: LiveGateway) -> None:
    await wait_for(lambda: live.ready_status(200), timeout=60, message="ready again")
    assert await _connected(live, "event") == 1
    assert await _connected(live, "telemetry") == 1


@pytest.mark.fault(
    "Broker restarted mid-stream (clean stop, persistence on)",
    checks="/readyz 503 with both MQTT lanes down and scgw_mqtt_connected 0 while down; "
    "ready again after; every reading and event in the views exactly once",
)
async def test_broker_restart_mid_stream(
    mosquitto: MosquittoServer,
    db_url: str,
    devices: Publisher,
    observer: Store,
    live_gateway: Any,
) -> None:
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    live: LiveGateway = await live_gateway(fault_settings(mosquitto.url, db_url, free_port()))
    stream = Stream(devices, DEVICES)
    stream.start(BEFORE)

    async def some_stored() -> bool:
        return (await counts(observer))[0] >= BEFORE // 4

    await wait_for(some_stored, timeout=30, message="stream flowing")
    mosquitto.stop()  # mid-stream: the devices keep publishing into their own queues
    await _outage_is_visible(live)
    await stream.join()
    stream.start(DURING)
    await stream.join()
    mosquitto.start()
    await _recovered(live)
    stream.start(AFTER)
    await stream.join()
    await devices.flushed(60)
    await wait_exactly_once(observer, stream)
    assert stream.sent_events > 0


@pytest.fixture
def proxy(mosquitto: MosquittoServer) -> Iterator[TcpProxy]:
    with TcpProxy(mosquitto.port) as link:
        yield link


@pytest.mark.fault(
    "Network cut between gateway and broker (connections reset)",
    checks="/readyz 503 and scgw_mqtt_connected 0 at once; the broker keeps the session "
    "and queues; after the link heals every reading and event exactly once",
)
async def test_network_cut_mid_stream(
    mosquitto: MosquittoServer,
    db_url: str,
    devices: Publisher,
    observer: Store,
    live_gateway: Any,
    proxy: TcpProxy,
) -> None:
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    live: LiveGateway = await live_gateway(fault_settings(proxy.url, db_url, free_port()))
    stream = Stream(devices, DEVICES)
    stream.start(BEFORE)

    async def some_stored() -> bool:
        return (await counts(observer))[0] >= BEFORE // 4

    await wait_for(some_stored, timeout=30, message="stream flowing")
    proxy.cut()
    await _outage_is_visible(live)
    await stream.join()
    stream.start(DURING)  # the devices still reach the broker: it queues for the gateway
    await stream.join()
    await devices.flushed(60)
    proxy.heal()
    await _recovered(live)
    stream.start(AFTER)
    await stream.join()
    await devices.flushed(60)
    await wait_exactly_once(observer, stream)


@pytest.mark.fault(
    "Network blackhole: packets silently dropped (no RST), broker still up",
    checks="the MQTT keepalive (5 s) notices the dead link; /readyz 503 and "
    "scgw_mqtt_connected 0; reconnect after the link heals; exactly-once in the views",
)
async def test_network_blackhole_detected_by_keepalive(
    mosquitto: MosquittoServer,
    db_url: str,
    devices: Publisher,
    observer: Store,
    live_gateway: Any,
    proxy: TcpProxy,
) -> None:
    await register(db_url, DEVICES, DeviceType.MOTION_SENSOR)
    settings = fault_settings(proxy.url, db_url, free_port(), mqtt={"keepalive": 5})
    live: LiveGateway = await live_gateway(settings)
    stream = Stream(devices, DEVICES)
    stream.start(BEFORE)

    async def some_stored() -> bool:
        return (await counts(observer))[0] >= BEFORE // 4

    await wait_for(some_stored, timeout=30, message="stream flowing")
    proxy.blackhole()
    await stream.join()
    # Nothing tells the gateway: only its keepalive can (a PINGREQ without PINGRESP).
    await _outage_is_visible(live)
    stream.start(DURING)
    await stream.join()
    await devices.flushed(60)
    proxy.heal()
    await _recovered(live)
    stream.start(AFTER)
    await stream.join()
    await devices.flushed(60)
    await wait_exactly_once(observer, stream)
