"""From a press to a human who accepted: real broker, real database, a local webhook as the
volunteers' phones, the one-tap link over real HTTP."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx

from alerts.models import AlertState
from gateway.runtime import Gateway
from tests.alerts.conftest import (
    DeviceInbox,
    accept_link,
    alert_settings,
    http_port,
    seed_community,
)
from tests.gateway.conftest import Publisher
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver

T0 = datetime.now(UTC) - timedelta(seconds=30)


async def _start(gateway: Gateway) -> asyncio.Task[None]:
    task = asyncio.create_task(gateway.run())
    await wait_for(gateway.ingesting.is_set, timeout=20, message="gateway ingesting")
    return task


async def _stop(gateway: Gateway, task: asyncio.Task[None]) -> None:
    gateway.request_stop()
    await asyncio.wait_for(task, 20)


async def _alerts(gateway: Gateway) -> list:  # type: ignore[type-arg]
    return await gateway.alerting.store.list_alerts()


async def test_press_reaches_the_assigned_volunteer_who_accepts_by_link(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver, device_inbox: DeviceInbox
) -> None:
    await seed_community(db_url, phones)
    port = http_port()
    gateway = Gateway(alert_settings(mosquitto, db_url, port))
    task = await _start(gateway)
    publisher = Publisher(mosquitto.url)
    try:
        publisher.json("scgw/btn-1/event", {"id": "p-1", "seq": 7, "type": "sos"})
        await wait_for(lambda: phones.to("/v-1"), timeout=15, message="volunteer notified")
        body = phones.to("/v-1")[0].json()
        assert "张秀英" in body["message"]
        assert "3号楼1单元201" in body["message"]
        link = accept_link(body)

        async with httpx.AsyncClient(timeout=10) as client:
            page = await client.get(link)  # a chat app's preview: shows, never acts
            assert page.status_code == 200
            assert (await _alerts(gateway))[0].state is AlertState.OPEN
            done = await client.post(link, data={"action": "accept"})
            assert done.status_code == 200
            again = await client.post(link, data={"action": "accept"})
            assert again.status_code == 409  # single use

        alert = (await _alerts(gateway))[0]
        assert alert.state is AlertState.ACKNOWLEDGED
        assert alert.acked_by == "responder:v-1"
        assert alert.next_due_at is None  # escalation stopped
        await wait_for(
            lambda: device_inbox.commands() == ["alert_received", "responder_assigned"],
            timeout=10,
            message="device feedback in order",
        )
        assert all(m["alert_id"] == alert.id for m in device_inbox.messages)
        assert device_inbox.messages[0]["seq"] == 7
        assert [r.path for r in phones.requests] == ["/v-1"]  # nobody else was bothered
        timeline = [e.action for e in await gateway.alerting.store.timeline(alert.id)]
        assert timeline[0] == "opened"
        assert {"step", "notify", "accepted"} <= set(timeline)
    finally:
        publisher.close()
        await _stop(gateway, task)


async def test_decline_moves_on_at_once(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver
) -> None:
    await seed_community(db_url, phones)
    port = http_port()
    gateway = Gateway(alert_settings(mosquitto, db_url, port))  # step ack timeout 60 s
    task = await _start(gateway)
    publisher = Publisher(mosquitto.url)
    try:
        publisher.json("scgw/btn-1/event", {"id": "p-2", "type": "fall"})
        await wait_for(lambda: phones.to("/v-1"), timeout=15, message="volunteer notified")
        link = accept_link(phones.to("/v-1")[0].json())
        async with httpx.AsyncClient(timeout=10) as client:
            declined = await client.post(link, json={"action": "decline"})
        assert declined.status_code == 200
        # The desk hears it well before the 60 s ack timeout.
        await wait_for(lambda: phones.to("/duty"), timeout=10, message="desk notified")
        alert = (await _alerts(gateway))[0]
        assert alert.state is AlertState.OPEN
        actions = [e.action for e in await gateway.alerting.store.timeline(alert.id)]
        assert "declined" in actions
    finally:
        publisher.close()
        await _stop(gateway, task)


async def test_repeats_join_and_cancel_within_grace_cancels(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver, device_inbox: DeviceInbox
) -> None:
    await seed_community(db_url, phones)
    gateway = Gateway(alert_settings(mosquitto, db_url, http_port()))
    task = await _start(gateway)
    publisher = Publisher(mosquitto.url)
    try:
        for i in range(3):
            publisher.json("scgw/btn-1/event", {"id": f"r-{i}", "type": "sos"})
        publisher.json("scgw/btn-1/event", {"id": "r-0", "type": "sos"})  # a redelivery

        async def joined() -> bool:
            alerts = await _alerts(gateway)
            return len(alerts) == 1 and alerts[0].count == 3

        await wait_for(joined, timeout=15, message="three presses, one alert")
        publisher.json("scgw/btn-1/event", {"id": "c-1", "type": "cancel"})

        async def cancelled() -> bool:
            return (await _alerts(gateway))[0].state is AlertState.CANCELLED

        await wait_for(cancelled, timeout=10, message="cancelled by the resident")
        await wait_for(
            lambda: "resolved" in device_inbox.commands(), timeout=10, message="device told"
        )
    finally:
        publisher.close()
        await _stop(gateway, task)


async def test_sensor_restore_p1_stays_p2_cancels(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver
) -> None:
    await seed_community(db_url, phones)
    gateway = Gateway(alert_settings(mosquitto, db_url, http_port()))
    task = await _start(gateway)
    publisher = Publisher(mosquitto.url)
    store = gateway.alerting.store
    try:
        publisher.json("scgw/smoke-1/event", {"id": "s-1", "type": "smoke"})
        publisher.json("scgw/water-1/event", {"id": "w-1", "type": "water_leak"})
        await wait_for(lambda: _count(gateway, 2), timeout=15, message="two alerts")
        publisher.json("scgw/smoke-1/event", {"id": "s-2", "type": "restore"})
        publisher.json("scgw/water-1/event", {"id": "w-2", "type": "restore"})

        async def settled() -> dict[str, AlertState] | None:
            states = {a.kind: a.state for a in await _alerts(gateway)}
            return states if states.get("water_leak") is AlertState.CANCELLED else None

        states = await wait_for(settled, timeout=10, message="water leak cancelled")
        assert states["smoke"] is AlertState.OPEN  # a human closes a fire alarm
        smoke = next(a for a in await _alerts(gateway) if a.kind == "smoke")

        async def noted() -> bool:
            return "restore" in [e.action for e in await store.timeline(smoke.id)]

        await wait_for(noted, timeout=10, message="restore noted on the smoke alert")
    finally:
        publisher.close()
        await _stop(gateway, task)


async def test_temperature_hovering_at_the_limit_opens_one_alert(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver
) -> None:
    await seed_community(db_url, phones)
    gateway = Gateway(alert_settings(mosquitto, db_url, http_port()))
    task = await _start(gateway)
    publisher = Publisher(mosquitto.url)
    try:
        values = [54, 56, 57, 54, 56, 53, 58, 54, 57, 56]
        for i, value in enumerate(values):
            stamp = (T0 + timedelta(seconds=i)).isoformat()
            publisher.json("scgw/th-1/telemetry", {"ts": stamp, "metrics": {"temperature": value}})
        await publisher.flushed()

        # Every message acked means every reading stored *and* seen by the thresholds.
        await wait_for(
            lambda: (
                gateway.metrics.value("scgw_ack_lag_seconds_count", lane="telemetry") >= len(values)
            ),
            timeout=15,
            message="telemetry handled",
        )
        alerts = await _alerts(gateway)
        assert [(a.kind, a.count) for a in alerts] == [("high_temp", 1)]
        detail = json.loads(alerts[0].detail)
        assert detail["metric"] == "temperature"
    finally:
        publisher.close()
        await _stop(gateway, task)


async def _count(gateway: Gateway, n: int) -> bool:
    return len(await _alerts(gateway)) == n
