"""MQTT ingest end to end: a real mosquitto, a real database (SQLite and PostgreSQL), the
gateway in-process. What a technician would check: it is in the views, once; bad input is
counted and nobody else is affected."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices.models import DeviceType
from tests.gateway.conftest import Publisher, gateway_settings, register
from tests.harness.mosquitto import MosquittoServer
from tests.harness.waiting import wait_for

T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


def ts(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat()


async def test_events_telemetry_and_status_reach_the_views(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    await register(db_url, ["btn-1"])
    await register(db_url, ["th-1"], DeviceType.TEMP_HUMIDITY)
    gw = await start_gateway(gateway_settings(mosquitto, db_url))

    publisher.json("scgw/btn-1/event", {"id": "e-1", "ts": ts(0), "type": "sos", "battery": 77})
    publisher.json(
        "scgw/th-1/telemetry", {"ts": ts(1), "metrics": {"temperature": 21.5, "humidity": 40}}
    )
    publisher.json("scgw/th-1/status", {"state": "online", "fw": "2.1"}, retain=True)

    await wait_for(
        lambda: gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'th-1'"),
        timeout=10,
        message="readings stored",
    )
    rows = await gw.store.query("SELECT type, event_id FROM v_events WHERE device_id = 'btn-1'")
    assert rows == [("sos", "e-1")]
    values = await gw.store.query(
        "SELECT metric, value FROM v_readings WHERE device_id = 'th-1' ORDER BY metric"
    )
    assert values == [("humidity", 40.0), ("temperature", 21.5)]

    async def health() -> list[tuple[str, int | None, bool]]:
        rows = await gw.store.query(
            "SELECT device_id, battery, online FROM v_devices ORDER BY device_id"
        )
        return [(d, b, bool(o)) for d, b, o in rows]

    # Health is written after the ack: wait for it rather than race it.
    expected = [("btn-1", 77, True), ("th-1", None, True)]
    await wait_for(
        lambda: _equals(health, expected), timeout=10, message="device health in v_devices"
    )

    # The device's will: the broker publishes it when the device vanishes.
    publisher.json("scgw/th-1/status", {"state": "offline"}, retain=True)

    async def offline() -> bool:
        rows = await gw.store.query("SELECT online FROM v_devices WHERE device_id = 'th-1'")
        return not rows[0][0]

    await wait_for(offline, timeout=10, message="th-1 offline")


async def test_resent_events_and_telemetry_change_nothing(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    await register(db_url, ["btn-1", "btn-2"])
    gw = await start_gateway(gateway_settings(mosquitto, db_url))

    for _ in range(3):
        publisher.json("scgw/btn-1/event", {"id": "same-id", "type": "sos"})
        publisher.json("scgw/btn-2/event", {"seq": 41, "ts": ts(0), "type": "fall"})
        publisher.json("scgw/btn-1/telemetry", {"ts": ts(2), "metrics": {"battery": 90}})
    publisher.json("scgw/btn-2/event", {"seq": 42, "ts": ts(1), "type": "fall"})  # a new one
    await publisher.flushed()

    await wait_for(
        lambda: gw.metric("scgw_duplicates_total", kind="event") >= 4,
        timeout=10,
        message="duplicates absorbed",
    )
    await wait_for(
        lambda: gw.metric("scgw_messages_stored_total", kind="telemetry") >= 3,
        timeout=10,
        message="telemetry handled",
    )
    events = await gw.store.query("SELECT device_id, type FROM v_events ORDER BY time")
    assert sorted(events) == [("btn-1", "sos"), ("btn-2", "fall"), ("btn-2", "fall")]
    assert await gw.count("SELECT count(*) FROM v_readings") == 1


@pytest.mark.fault(
    "Bad MQTT input: malformed JSON, wrong types, oversize, flooding device",
    checks="each rejection counted by reason; other devices' messages stored",
)
async def test_bad_input_is_counted_and_others_are_unaffected(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    await register(db_url, ["btn-1", "good-1"])
    gw = await start_gateway(
        gateway_settings(
            mosquitto,
            db_url,
            mqtt={"max_payload_bytes": 1024},
            # The opt-in discarding of floods, with a tiny limit to meet it at once.
            ingest={"device_rate": 0.001, "device_burst": 5, "flood_action": "discard"},
        )
    )

    bad = [
        ("scgw/btn-1/event", b"{not json"),  # malformed JSON
        ("scgw/btn-1/event", b'{"type": "explode"}'),  # unknown event type
        ("scgw/btn-1/event", b'{"type": "sos", "battery": "full"}'),  # wrong type
        ("scgw/btn-1/telemetry", b'{"metrics": {"temperature": "hot"}}'),  # wrong type
        ("scgw/btn-1/telemetry", b"[]"),  # not an object
        ("scgw/btn-1/event", b'{"type": "sos", "pad": "' + b"x" * 2048 + b'"}'),  # oversize
        ("scgw/bad.id/event", b'{"type": "sos"}'),  # invalid device id
        ("scgw/btn-1/alarm", b'{"type": "sos"}'),  # not one of our topics: not subscribed
    ]
    for topic, payload in bad:
        publisher.raw(topic, payload)
    for i in range(200):  # a flooding device: 200 telemetry messages at once, limit 5 burst
        publisher.json("scgw/btn-1/telemetry", {"ts": ts(i), "metrics": {"rssi": -60}})
    publisher.json("scgw/stranger/event", {"type": "sos", "id": "s-1"})  # unknown device
    publisher.json("scgw/good-1/event", {"type": "sos", "id": "g-1"})
    await publisher.flushed()

    await wait_for(
        lambda: gw.count("SELECT count(*) FROM v_events WHERE device_id = 'good-1'"),
        timeout=10,
        message="the good device's press is stored",
    )

    def rejected(lane: str, reason: str) -> float:
        return gw.metric("scgw_messages_rejected_total", lane=lane, reason=reason)

    await wait_for(
        lambda: rejected("telemetry", "rate_limited") >= 195,
        timeout=10,
        message="flood rate-limited",
    )
    assert rejected("event", "malformed_json") == 1
    assert rejected("event", "invalid_payload") == 2
    assert rejected("telemetry", "invalid_payload") == 2
    assert rejected("event", "oversize") == 1
    assert rejected("event", "bad_device_id") == 1
    assert rejected("event", "unknown_device") == 1
    # The limit counts the device's readable messages: 200 flood, burst 5.
    assert rejected("telemetry", "rate_limited") == 195
    await wait_for(
        lambda: _is(gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'btn-1'"), 5),
        timeout=10,
        message="the five readings within the burst stored",
    )

    pending = await gw.store.pending_devices()
    assert [(p.device_id, p.sos_count) for p in pending] == [("stranger", 1)]
    # The unknown device raised nothing: its event is not among the stored events.
    assert await gw.count("SELECT count(*) FROM v_events WHERE device_id = 'stranger'") == 0
    assert all(t.running and t.restarts == 0 for t in gw.gateway.tasks.values())


async def test_unknown_device_is_accepted_once_imported(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    gw = await start_gateway(
        gateway_settings(mosquitto, db_url, ingest={"unknown_recheck": "50ms"})
    )
    publisher.json("scgw/late-1/telemetry", {"ts": ts(0), "metrics": {"battery": 50}})
    await wait_for(gw.store.pending_devices, timeout=10, message="late-1 pending")

    await register(db_url, ["late-1"])  # a technician adopts it (another process)

    async def stored() -> int:
        publisher.json(
            "scgw/late-1/telemetry",
            {"ts": datetime.now(UTC).isoformat(), "metrics": {"battery": 51}},
        )
        return await gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'late-1'")

    await wait_for(stored, timeout=10, interval=0.1, message="late-1 readings stored")


async def test_event_lane_does_not_wait_for_telemetry(
    mosquitto: MosquittoServer, db_url: str, publisher: Publisher, start_gateway
) -> None:
    """Telemetry writes are held (a slow database for the batch); a press is still stored and
    acked at once, and the held telemetry is all stored when writes resume."""
    await register(db_url, ["th-1", "btn-1"])
    gw = await start_gateway(gateway_settings(mosquitto, db_url))
    store = gw.store
    real_batch = store.store_batch
    release = asyncio.Event()
    held = asyncio.Event()

    async def slow_batch(readings, health):  # type: ignore[no-untyped-def]
        held.set()
        await release.wait()
        return await real_batch(readings, health)

    store.store_batch = slow_batch  # type: ignore[method-assign]
    for i in range(500):
        publisher.json("scgw/th-1/telemetry", {"ts": ts(i), "metrics": {"temperature": 20}})
    await wait_for(held.is_set, timeout=10, message="telemetry batch in progress")
    publisher.json("scgw/btn-1/event", {"type": "sos", "id": "urgent"})

    await wait_for(
        lambda: gw.count("SELECT count(*) FROM v_events WHERE device_id = 'btn-1'"),
        timeout=5,
        interval=0.005,
        message="press stored while telemetry is held",
    )
    assert await gw.count("SELECT count(*) FROM v_readings") == 0
    release.set()

    async def all_stored() -> bool:
        return await gw.count("SELECT count(*) FROM v_readings") == 500

    await wait_for(all_stored, timeout=20, message="held telemetry stored")


async def _equals(probe, expected):  # type: ignore[no-untyped-def]
    return (await probe()) == expected


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)
