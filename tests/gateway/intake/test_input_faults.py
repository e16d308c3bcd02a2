"""The input policy under faults (issue 13): backlogs are stored whole with the default
config, a flooding device is flagged (not cut off) while another's press is paged, the device
hears "received" during a database outage, and content a database refuses is set aside at
once — never a stalled lane, never retried forever.

Real parts: mosquitto (restarted), a private PostgreSQL server (stopped and started), the
SIA receiver over TCP, a webhook as the phones.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devices import dc09
from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.runtime import Gateway
from gateway.storage.base import StoreRefused
from tests.alerts.conftest import DeviceInbox, device_inbox
from tests.gateway.conftest import Publisher
from tests.gateway.intake.conftest import SIA_ACCOUNT, SiteFactory, seed, sos_device
from tests.harness.mosquitto import MosquittoServer
from tests.harness.postgres import PostgresServer
from tests.harness.waiting import wait_for
from tests.harness.webhook import Receiver

__all__ = ["device_inbox"]  # the fixture, shared with the alert tests

T0 = datetime.now(UTC) - timedelta(hours=2)


async def count(gateway: Gateway, sql: str, *params: object) -> int:
    return int((await gateway.store.query(sql, params))[0][0])


def buffered(publisher: Publisher, device: str, n: int, *, every: timedelta) -> None:
    """A device's buffered readings, produced at its normal pace, uploaded all at once."""
    for i in range(n):
        at = (T0 + i * every).isoformat()
        publisher.json(f"scgw/{device}/telemetry", {"ts": at, "metrics": {"temperature": 21.5}})


async def test_a_300_reading_burst_from_one_device_is_stored_whole(
    db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    th = DeviceRecord("th-1", DeviceType.TEMP_HUMIDITY)
    await seed(db_url, phones, [th])
    site = await site_factory(db_url)  # the default [ingest]: rate 20/s, burst 200
    buffered(site.publisher, "th-1", 300, every=timedelta(seconds=10))
    await site.publisher.flushed()
    sql = "SELECT count(*) FROM v_readings WHERE device_id = 'th-1'"
    await wait_for(lambda: _is(count(site.gateway, sql), 300), timeout=30, message="300 stored")
    assert site.gateway.metrics.value("scgw_devices_rate_limited") == 0  # paced: no flood


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


async def test_a_backlog_through_a_database_outage_and_a_broker_restart_is_stored_once(
    pg_owned_server: PostgresServer,
    mosquitto: MosquittoServer,
    phones: Receiver,
    site_factory: SiteFactory,
    tmp_path: Path,
) -> None:
    db_url = await asyncio.to_thread(pg_owned_server.create_database, "backlog")
    await seed(db_url, phones, [DeviceRecord("th-1", DeviceType.TEMP_HUMIDITY)])
    site = await site_factory(db_url, spool={"dir": str(tmp_path / "spool")})
    publisher = Publisher(mosquitto.url, "backlog-sensor")
    try:
        await asyncio.to_thread(pg_owned_server.stop)
        buffered(publisher, "th-1", 600, every=timedelta(seconds=5))
        await publisher.flushed()
        await asyncio.sleep(4)  # the outage lasts a while (the scenario, not a wait for a result)
        mosquitto.stop()
        mosquitto.start()
        publisher.close()
        publisher = Publisher(mosquitto.url, "backlog-sensor-2")
        buffered(publisher, "th-1", 600, every=timedelta(seconds=5))  # the same 600 again …
        for i in range(600, 1200):  # … and 600 more, produced later at the same pace
            at = (T0 + i * timedelta(seconds=5)).isoformat()
            publisher.json("scgw/th-1/telemetry", {"ts": at, "metrics": {"temperature": 21.5}})
        await publisher.flushed()
        await asyncio.sleep(4)
        await asyncio.to_thread(pg_owned_server.start)
        sql = "SELECT count(*) FROM v_readings WHERE device_id = 'th-1'"
        await wait_for(
            lambda: _is(count(site.gateway, sql), 1200), timeout=90, message="all 1,200 stored"
        )
        await site.publisher.flushed()
        assert await count(site.gateway, sql) == 1200  # once each: duplicates absorbed
    finally:
        publisher.close()


async def test_alert_received_while_the_database_is_away(
    pg_owned_server: PostgresServer,
    phones: Receiver,
    site_factory: SiteFactory,
    device_inbox: DeviceInbox,
    tmp_path: Path,
) -> None:
    db_url = await asyncio.to_thread(pg_owned_server.create_database, "received_outage")
    await seed(db_url, phones, [sos_device("mqtt")])
    site = await site_factory(db_url, spool={"dir": str(tmp_path / "spool")})
    await asyncio.to_thread(pg_owned_server.stop)
    try:
        site.publisher.json("scgw/btn-mqtt/event", {"id": "outage-1", "type": "sos"})
        # Durable in the spool: the resident hears it while PostgreSQL is still down.
        await wait_for(
            lambda: device_inbox.commands() == ["alert_received"],
            timeout=15,
            message="alert_received during the outage",
        )
        assert not pg_owned_server.running
        await wait_for(lambda: phones.to("/v-1"), timeout=15, message="volunteer paged")
        alert_id = device_inbox.messages[0]["alert_id"]
    finally:
        await asyncio.to_thread(pg_owned_server.start)
    # Once the database is back the alert opens with the id the device was told.
    await wait_for(
        lambda: _alert_ids(site.gateway), timeout=60, message="alert opened after the outage"
    )
    assert await _alert_ids(site.gateway) == [alert_id]


async def _alert_ids(gateway: Gateway) -> list[str]:
    return [a.id for a in await gateway.alerting.store.list_alerts()]


async def test_a_flooding_device_is_flagged_and_another_devices_press_is_paged(
    mosquitto: MosquittoServer, db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("mqtt"), DeviceRecord("th-x", DeviceType.TEMP_HUMIDITY)])
    site = await site_factory(db_url)
    flooder = Publisher(mosquitto.url, "flooder")
    try:
        flood = 20_000  # no device time: judged by arrival
        for _ in range(flood):
            flooder.json("scgw/th-x/telemetry", {"metrics": {"temperature": 99.0}})
        metrics = site.gateway.metrics
        await wait_for(
            lambda: metrics.value("scgw_devices_rate_limited") == 1,
            timeout=60,
            message="the flooder flagged",
        )
        await site.press("mqtt")
        await wait_for(lambda: phones.to("/v-1"), timeout=30, message="press paged")
        await flooder.flushed(within=120)
        sql = "SELECT count(*) FROM v_readings WHERE device_id = 'th-x'"
        # Flagged, not cut off: with the default config every reading is kept.
        await wait_for(
            lambda: _is(count(site.gateway, sql), flood), timeout=120, message="flood stored"
        )
        flags = await site.gateway.store.flood_flags(datetime.now(UTC) - timedelta(minutes=10))
        assert set(flags) == {"th-x"}  # in the database: every instance sees it
    finally:
        flooder.close()


@pytest.mark.parametrize(
    ("data", "code", "kind"),
    [
        ("#1234|Nri1pi003da12-01-26ti12:34:56PA7^Bedroom / pendant^", "PA", "sos"),
        ("#1234|Nri1/OP7^opened by user 2^", "OP", "other"),
    ],
)
async def test_dc09_reports_with_modifiers_text_or_unmapped_codes_are_stored_then_acked(
    data: str, code: str, kind: str, db_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(db_url, phones, [sos_device("sia")])
    site = await site_factory(db_url)
    sia = site.gateway.parts.sia
    assert sia is not None
    assert sia.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", sia.port)
    try:
        writer.write(dc09.build("SIA-DCS", "0042", SIA_ACCOUNT, data=data))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(4096), 30)
    finally:
        writer.close()
    assert b'"ACK"0042' in answer
    rows = await site.gateway.store.query("SELECT type, payload FROM v_events")
    assert [r[0] for r in rows] == [kind]
    assert f'"code":"{code}"' in str(rows[0][1]).replace(" ", "")


async def test_content_the_database_refuses_is_set_aside_at_once_and_others_flow(
    mosquitto: MosquittoServer,
    db_url: str,
    phones: Receiver,
    site_factory: SiteFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await seed(db_url, phones, [sos_device("mqtt"), sos_device("zigbee2mqtt")])
    site = await site_factory(db_url)
    store = site.gateway.store
    real = store.store_event

    async def refusing(event: Any) -> bool:
        # The database refusing this device's content (as PostgreSQL refuses a NUL byte):
        # injected at the store, the rest of the road is real.
        if event.device_id == "btn-zigbee":
            raise StoreRefused("PostgreSQL refused the content: NUL byte")
        return await real(event)

    monkeypatch.setattr(store, "store_event", refusing)
    site.publisher.json("zigbee2mqtt/sos_z", {"action": "sos"})
    await site.press("mqtt")
    await wait_for(lambda: phones.to("/v-1"), timeout=30, message="the other press paged")
    await wait_for(
        lambda: _is(count(site.gateway, "SELECT count(*) FROM set_aside"), 1),
        timeout=15,
        message="the refused input set aside",
    )
    metrics = site.gateway.metrics
    assert (
        metrics.value("scgw_messages_rejected_total", lane="zigbee2mqtt", reason="unstorable") == 1
    )
    assert all(t.restarts == 0 for t in site.gateway.tasks.values())  # no crash, no backoff
    # Acknowledged: the broker does not send it again (nothing waits in the session).
    assert site.gateway.parts.lanes[2].depth == 0


async def test_nul_in_text_fields_is_removed_and_the_event_acted_on(
    pg_url: str, phones: Receiver, site_factory: SiteFactory
) -> None:
    await seed(pg_url, phones, [sos_device("mqtt")])
    site = await site_factory(pg_url)
    site.publisher.raw("scgw/btn-mqtt/event", b'{"id": "p\\u0000-1", "type": "sos"}')
    site.publisher.raw("scgw/btn-mqtt/status", b'{"state": "online", "fw": "1.2\\u0000"}')
    site.publisher.raw(
        "scgw/btn-mqtt/telemetry", b'{"metrics": {"temp\\u0000": 21.5, "battery": 90}}'
    )
    await wait_for(lambda: phones.to("/v-1"), timeout=30, message="paged")
    metrics = site.gateway.metrics
    await wait_for(
        lambda: metrics.value("scgw_inputs_flagged_total", lane="telemetry", flag="nul_removed"),
        timeout=15,
        message="the status's NUL removed and flagged",
    )
    assert await count(site.gateway, "SELECT count(*) FROM v_events WHERE event_id = 'p-1'") == 1
    assert metrics.value("scgw_inputs_flagged_total", lane="event", flag="nul_removed") == 1
    # A reading's metric name stays strict: refused and counted, never a fault.
    await wait_for(
        lambda: (
            metrics.value(
                "scgw_messages_rejected_total", lane="telemetry", reason="invalid_payload"
            )
            == 1
        ),
        timeout=15,
        message="the bad metric name refused",
    )
    assert all(t.restarts == 0 for t in site.gateway.tasks.values())
