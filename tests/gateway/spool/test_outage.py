"""PostgreSQL stopped while telemetry and a press flow (issue 8): the press is notified during
the outage, and once the database is back every reading and the event are stored exactly once,
the alert exists with its outage note and does not notify the same volunteer again.

Real parts only: a private PostgreSQL server the test stops and starts, mosquitto, the webhook
standing in for the volunteers' phones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.models import AlertState
from bench.services.postgres import PostgresServer
from devices.models import DeviceType
from gateway.config import Settings, load_settings
from gateway.runtime import Gateway
from tests.alerts.conftest import seed_community
from tests.gateway.conftest import Publisher, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver, running_receiver

SENSORS = ["th-1", "th-2", "th-3", "th-4"]
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture
async def phones() -> AsyncIterator[Receiver]:
    async with running_receiver() as receiver:
        yield receiver


def outage_settings(
    broker: MosquittoServer, db_url: str, spool_dir: Path, **spool: Any
) -> Settings:
    return load_settings(
        None,
        mqtt={"url": broker.url, "client_id": "gw-outage"},
        database={"url": db_url, "batch_max_delay": "20ms"},
        http={"public_url": "http://127.0.0.1:9"},
        # The test's sensors send faster than a real one; the per-device limit is not tested here.
        alerts={
            "policies": {
                "P1": {
                    "steps": [
                        {"targets": ["assigned"], "ack_timeout": "60s"},
                        {"targets": ["role:duty"], "ack_timeout": "10m"},
                    ]
                }
            }
        },
        spool={"dir": str(spool_dir), "write_timeout": "500ms", **spool},
    )


class Telemetry:
    """Readings at distinct instants, so each one is a distinct row in v_readings."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self.sent = 0

    def send(self, count: int) -> None:
        for _ in range(count):
            device = SENSORS[self.sent % len(SENSORS)]
            ts = T0 + timedelta(milliseconds=self.sent)
            self.publisher.json(
                f"scgw/{device}/telemetry",
                {"ts": ts.isoformat(), "metrics": {"temperature": 20 + self.sent % 5}},
            )
            self.sent += 1

    async def flow(self, stop: asyncio.Event, per_tick: int = 10) -> None:
        """Keep telemetry coming until ``stop`` (about 200 readings a second)."""
        while not stop.is_set():
            self.send(per_tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)


async def start(gateway: Gateway) -> asyncio.Task[None]:
    task = asyncio.create_task(gateway.run())
    await wait_for(gateway.ingesting.is_set, timeout=30, message="gateway ingesting")
    return task


async def count(gateway: Gateway, sql: str) -> int:
    rows = await gateway.store.query(sql)
    return int(rows[0][0])


async def seeded(server: PostgresServer, phones: Receiver, name: str) -> str:
    db_url = await asyncio.to_thread(server.create_database, name)
    await seed_community(db_url, phones)
    await register(db_url, SENSORS, DeviceType.TEMP_HUMIDITY)
    return db_url


@pytest.mark.fault(
    "PostgreSQL stopped for several seconds while telemetry (~200 msg/s) and a press flow",
    checks="the press reaches its volunteer during the outage (degraded-mode text); after "
    "restart every reading and the event are in the views exactly once, one alert with an "
    "'notified during database outage' timeline entry, escalation continues from step 2",
)
async def test_press_is_notified_during_the_outage_and_everything_lands_once(
    pg_owned_server: PostgresServer,
    mosquitto: MosquittoServer,
    phones: Receiver,
    tmp_path: Path,
) -> None:
    db_url = await seeded(pg_owned_server, phones, "outage")
    gateway = Gateway(outage_settings(mosquitto, db_url, tmp_path / "spool"), http=False)
    task = await start(gateway)
    publisher = Publisher(mosquitto.url, "outage-devices")
    telemetry = Telemetry(publisher)
    stop_flow = asyncio.Event()
    flow = asyncio.create_task(telemetry.flow(stop_flow))
    try:
        await wait_for(
            lambda: count(gateway, "SELECT count(*) FROM v_readings"),
            timeout=20,
            message="telemetry reaches the database before the outage",
        )

        await asyncio.to_thread(pg_owned_server.stop)
        publisher.json("scgw/btn-1/event", {"id": "press-1", "seq": 11, "type": "sos"})

        # The assigned volunteer hears of the press while PostgreSQL is still down.
        await wait_for(lambda: phones.to("/v-1"), timeout=20, message="press notified")
        assert not pg_owned_server.running
        body = phones.to("/v-1")[0].json()
        text = f"{body.get('title', '')}\n{body.get('message', '')}"
        assert "降级" in text  # says the system is in degraded mode
        assert "张秀英" in text
        assert "13800000000" in text
        assert "3号楼1单元201" in text
        assert "/r/" not in text  # no accept link without the database
        notified_id = re.search(r"告警编号：([0-9a-f]{32})", text)
        assert notified_id is not None

        ready = await gateway.readiness()
        assert ready["database"]["ok"] is False
        assert ready["spool"]["state"] == "spooling"
        assert ready["spool"]["ok"] is True
        # Telemetry keeps flowing into the spool (acked from there) during the outage.
        spooled_before = gateway.metrics.value("scgw_spooled_total", kind="readings")
        await wait_for(
            lambda: (
                gateway.metrics.value("scgw_spooled_total", kind="readings") > spooled_before + 5
            ),
            timeout=20,
            message="readings spooled while the database is down",
        )
        assert gateway.metrics.value("scgw_spooled_total", kind="event") == 1
        assert gateway.metrics.value("scgw_spool_records") > 0

        await asyncio.to_thread(pg_owned_server.start)
        # Telemetry keeps flowing while the spool drains (it queues behind the spool).
        await wait_for(
            lambda: gateway.metrics.value("scgw_spool_drained_total", kind="readings") > 0,
            timeout=30,
            message="the drain started",
        )
        stop_flow.set()
        await flow
        await publisher.flushed()

        await wait_for(
            lambda: count(gateway, "SELECT count(*) FROM v_readings"),
            timeout=60,
            message="readings in the database",
        )

        async def all_stored() -> bool:
            return await count(gateway, "SELECT count(*) FROM v_readings") == telemetry.sent

        await wait_for(all_stored, timeout=60, message=f"all {telemetry.sent} readings stored")
        assert (
            await count(
                gateway,
                "SELECT count(*) FROM (SELECT device_id, metric, time FROM v_readings"
                " GROUP BY device_id, metric, time HAVING count(*) > 1) d",
            )
            == 0
        )
        assert await count(gateway, "SELECT count(*) FROM v_events") == 1
        await wait_for(
            lambda: gateway.spool is not None and not gateway.spool.active,
            timeout=30,
            message="spool drained",
        )
        assert list((tmp_path / "spool").glob("*.seg")) == []

        alerts = await gateway.alerting.store.list_alerts()
        assert len(alerts) == 1
        alert = alerts[0]
        assert alert.id == notified_id.group(1)  # the id the volunteer was told
        assert alert.state is AlertState.OPEN
        assert alert.step_index == 1  # step 1 went out during the outage: step 2 is next
        assert alert.next_due_at is not None
        assert alert.next_due_at > datetime.now(UTC) + timedelta(seconds=30)
        timeline = await gateway.alerting.store.timeline(alert.id)
        notes = [e for e in timeline if e.action == "outage_notified"]
        assert len(notes) == 1
        detail = json.loads(notes[0].detail)
        assert detail["note"].startswith("notified during database outage at ")
        assert detail["targets"] == ["responder:v-1"]
        assert detail["reached"] == 1
        assert len(phones.to("/v-1")) == 1  # not notified twice
        assert phones.to("/duty") == []
        ready = await gateway.readiness()
        assert ready["database"]["ok"] is True
        assert ready["spool"] == {**ready["spool"], "ok": True, "state": "ok", "records": 0}
        assert gateway.metrics.value("scgw_spool_drained_total", kind="event") == 1
    finally:
        stop_flow.set()
        await flow
        publisher.close()
        gateway.request_stop()
        await asyncio.wait_for(task, 30)


@pytest.mark.fault(
    "Database down and the spool full (8 KiB limit)",
    checks="/readyz says spool full; readings left unacked at the broker, the press still "
    "spooled and notified; after restart all readings and the event stored once",
)
async def test_full_spool_leaves_readings_at_the_broker_and_still_takes_the_press(
    pg_owned_server: PostgresServer,
    mosquitto: MosquittoServer,
    phones: Receiver,
    tmp_path: Path,
) -> None:
    db_url = await seeded(pg_owned_server, phones, "full")
    settings = outage_settings(mosquitto, db_url, tmp_path / "spool", max_bytes="8KiB")
    gateway = Gateway(settings, http=False)
    task = await start(gateway)
    publisher = Publisher(mosquitto.url, "full-devices")
    telemetry = Telemetry(publisher)
    try:
        await asyncio.to_thread(pg_owned_server.stop)
        telemetry.send(600)  # far more than 8 KiB of spool
        await publisher.flushed()

        await wait_for(
            lambda: gateway.metrics.value("scgw_spool_full") == 1,
            timeout=30,
            message="spool reported full",
        )
        ready = await gateway.readiness()
        assert ready["spool"]["ok"] is False
        assert ready["spool"]["state"] == "full"
        assert "SPOOL FULL" in str(ready["spool"]["detail"])
        assert gateway.metrics.value("scgw_spool_refused_total", kind="readings") > 0

        publisher.json("scgw/btn-1/event", {"id": "press-full", "type": "sos"})
        await wait_for(
            lambda: gateway.metrics.value("scgw_spooled_total", kind="event") == 1,
            timeout=20,
            message="the press is spooled although the spool is full",
        )
        await wait_for(lambda: phones.to("/v-1"), timeout=20, message="press notified")

        await asyncio.to_thread(pg_owned_server.start)

        async def all_stored() -> bool:
            return await count(gateway, "SELECT count(*) FROM v_readings") == telemetry.sent

        await wait_for(all_stored, timeout=90, message=f"all {telemetry.sent} readings stored")
        assert await count(gateway, "SELECT count(*) FROM v_events") == 1
        await wait_for(
            lambda: gateway.metrics.value("scgw_spool_full") == 0,
            timeout=30,
            message="spool no longer full",
        )
        assert (await gateway.readiness())["spool"]["state"] == "ok"
        assert len(await gateway.alerting.store.list_alerts()) == 1
    finally:
        publisher.close()
        gateway.request_stop()
        await asyncio.wait_for(task, 30)
