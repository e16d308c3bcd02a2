"""zigbee2mqtt during a database outage (issue 8): a device known before the outage keeps
flowing from memory, an address that cannot be looked up is spooled as it is instead of
stalling the lane, and once PostgreSQL is back everything lands exactly once — stored for a
registered device, kept in the pending list for an unregistered one.

Real parts only: a private PostgreSQL server the test stops and starts, mosquitto.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bench.services.postgres import PostgresServer
from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.config import load_settings
from gateway.runtime import Gateway
from tests.gateway.conftest import Publisher
from tests.gateway.recording import Recorder, register_records
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

SMOKE = {"battery": 100, "battery_low": False, "smoke": True, "tamper": False}
SOS = {"action": "emergency", "battery": 95, "linkquality": 120}


async def count(gateway: Gateway, sql: str, *params: object) -> int:
    rows = await gateway.store.query(sql, params)
    return int(rows[0][0])


async def test_zigbee_events_during_outage_land_once_after_it(
    pg_owned_server: PostgresServer, mosquitto: MosquittoServer, tmp_path: Path
) -> None:
    db_url = await asyncio.to_thread(pg_owned_server.create_database, "zigbee_outage")
    await register_records(
        db_url,
        [DeviceRecord("kitchen-smoke", DeviceType.SMOKE_DETECTOR, zigbee_name="kitchen_smoke")],
    )
    settings = load_settings(
        None,
        mqtt={"url": mosquitto.url, "client_id": "gw-z2m-outage"},
        database={"url": db_url, "batch_max_delay": "20ms"},
        # Every unknown address asks the registry again: the outage is met on each of them.
        ingest={"unknown_recheck": "0s"},
        spool={"dir": str(tmp_path / "spool"), "write_timeout": "500ms"},
    )
    gateway = Gateway(settings, http=False)
    recorder = Recorder()
    gateway.consequences.listen(recorder)
    task = asyncio.create_task(gateway.run())
    publisher = Publisher(mosquitto.url, "z2m-outage-devices")
    try:
        await wait_for(gateway.ingesting.is_set, timeout=30, message="gateway ingesting")
        # Registered while the gateway runs, after its index was read: not in memory.
        await register_records(
            db_url, [DeviceRecord("late-sos", DeviceType.SOS_BUTTON, zigbee_name="late_sos")]
        )

        await asyncio.to_thread(pg_owned_server.stop)
        # An address nobody registered comes first: it must not hold up the known device.
        publisher.json("zigbee2mqtt/stray_button", SOS)
        publisher.json("zigbee2mqtt/stray_th", {"temperature": 22.5, "humidity": 40})
        publisher.json("zigbee2mqtt/kitchen_smoke", SMOKE)
        publisher.json("zigbee2mqtt/late_sos", SOS)
        await publisher.flushed()

        # All four are durable in the spool, and acked, while PostgreSQL is still down.
        await wait_for(
            lambda: gateway.metrics.value("scgw_ack_lag_seconds_count", lane="zigbee2mqtt") == 4,
            timeout=30,
            message="all four zigbee2mqtt messages acked",
        )
        assert gateway.metrics.value("scgw_spooled_total", kind="event") == 3
        assert gateway.metrics.value("scgw_spooled_total", kind="readings") >= 1
        assert not pg_owned_server.running
        assert recorder.seen == []  # nothing reaches the engine before it is stored

        await asyncio.to_thread(pg_owned_server.start)
        await wait_for(
            lambda: gateway.spool is not None and not gateway.spool.active,
            timeout=60,
            message="spool drained",
        )

        assert await count(gateway, "SELECT count(*) FROM v_events") == 2
        assert (
            await count(
                gateway,
                "SELECT count(*) FROM v_events WHERE device_id = ? AND type = 'smoke'",
                "kitchen-smoke",
            )
            == 1
        )
        # Not in memory during the outage, registered before it: bound at the drain.
        assert (
            await count(
                gateway,
                "SELECT count(*) FROM v_events WHERE device_id = ? AND type = 'sos'",
                "late-sos",
            )
            == 1
        )
        assert sorted(recorder.of("kitchen-smoke") + recorder.of("late-sos")) == [
            ("smoke", False),
            ("sos", False),
        ]
        pending = {p.device_id: p for p in await gateway.store.pending_devices()}
        assert set(pending) == {"zigbee2mqtt-stray_button", "zigbee2mqtt-stray_th"}
        assert pending["zigbee2mqtt-stray_button"].sos_count == 1
        assert (
            await count(
                gateway, "SELECT count(*) FROM v_readings WHERE device_id LIKE 'zigbee2mqtt-%'"
            )
            == 0
        )
        assert (
            await count(
                gateway, "SELECT count(*) FROM v_readings WHERE device_id = 'kitchen-smoke'"
            )
            >= 1
        )
        assert list((tmp_path / "spool").glob("*.seg")) == []
        assert gateway.metrics.value("scgw_spool_set_aside_total") == 0
    finally:
        publisher.close()
        gateway.request_stop()
        await asyncio.wait_for(task, 30)
