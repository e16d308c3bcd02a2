"""The storage contract: every test here runs on SQLite and on PostgreSQL.

Values read back through ``query()`` are compared as Python values: instants as aware
datetimes (compared as instants), JSON columns as text, booleans by truth (SQLite has 0/1).
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import string
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.models import (
    DeviceHealth,
    DeviceType,
    Event,
    EventType,
    PendingSighting,
    Reading,
)
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import UpsertResult
from gateway.storage.base import BatchResult, Store
from gateway.storage.factory import open_store
from tests.storage.conftest import CST, NST, T0, columns_of


def event(
    device: str = "btn-1",
    *,
    ts: datetime = T0,
    event_id: str | None = None,
    seq: int | None = None,
    kind: EventType = EventType.SOS,
    payload: str = '{"type":"sos"}',
) -> Event:
    return Event(
        device_id=device,
        type=kind,
        ts=ts,
        received_at=T0,
        event_id=event_id,
        seq=seq,
        battery=90,
        payload=payload,
    )


async def events_of(store: Store, device: str) -> list[tuple[object, ...]]:
    return await store.query(
        "SELECT time, device_id, type, event_id, payload FROM v_events WHERE device_id = ?"
        " ORDER BY time, event_id",
        (device,),
    )


async def count(store: Store, sql: str, *params: object) -> int:
    rows = await store.query(sql, params)
    return int(rows[0][0])


# -- schema --------------------------------------------------------------------------------
async def test_migrate_is_idempotent_and_reopen_works(store: Store, store_url: str) -> None:
    first = await store.migrate()
    assert first >= 1
    assert await store.migrate() == first
    await store.close()

    again = open_store(store_url)
    await again.open()
    try:
        assert await again.migrate() == first
        versions = await again.query("SELECT version FROM schema_version ORDER BY version")
        applied = [v for (v,) in versions]
        # Version numbers are reserved per branch, so the list may have gaps.
        assert applied == sorted(set(applied))
        assert applied[0] == 1
        assert applied[-1] == first
    finally:
        await again.close()
    await store.open()  # the fixture closes it


@pytest.mark.parametrize(
    ("view", "columns"),
    [
        ("v_readings", ["time", "device_id", "metric", "value"]),
        ("v_events", ["time", "device_id", "type", "event_id", "payload"]),
        (
            "v_devices",
            [
                "device_id",
                "type",
                "name",
                "resident_id",
                "building",
                "unit",
                "room",
                "last_seen",
                "battery",
                "online",
            ],
        ),
    ],
)
async def test_views_have_exactly_the_spec_columns(
    store: Store, view: str, columns: list[str]
) -> None:
    assert columns_of(store, view) == columns


async def test_ping(store: Store) -> None:
    await store.ping()


# -- events --------------------------------------------------------------------------------
async def test_event_with_same_id_is_stored_once(store: Store) -> None:
    e = event(event_id="evt-42")
    assert await store.store_event(e) is True
    assert await store.store_event(e) is False
    # A redelivery may come with another receive time: the device's id is what counts.
    later = event(event_id="evt-42", ts=T0 + timedelta(seconds=5))
    assert await store.store_event(later) is False
    rows = await events_of(store, "btn-1")
    assert len(rows) == 1
    assert rows[0][1:4] == ("btn-1", "sos", "evt-42")


async def test_same_id_on_another_device_is_another_event(store: Store) -> None:
    assert await store.store_event(event("btn-1", event_id="x"))
    assert await store.store_event(event("btn-2", event_id="x"))
    assert await count(store, "SELECT count(*) FROM v_events") == 2


async def test_same_seq_same_day_is_a_duplicate(store: Store) -> None:
    assert await store.store_event(event(seq=7)) is True
    assert await store.store_event(event(seq=7, ts=T0 + timedelta(hours=2))) is False
    assert len(await events_of(store, "btn-1")) == 1


async def test_same_seq_another_day_is_a_new_event(store: Store) -> None:
    assert await store.store_event(event(seq=7)) is True
    assert await store.store_event(event(seq=7, ts=T0 + timedelta(days=1))) is True
    assert await store.store_event(event(seq=8)) is True
    assert len(await events_of(store, "btn-1")) == 3


async def test_event_without_id_or_seq_is_always_stored(store: Store) -> None:
    e = event()
    assert await store.store_event(e) is True
    assert await store.store_event(e) is True
    rows = await events_of(store, "btn-1")
    assert len(rows) == 2
    generated = {r[3] for r in rows}
    assert len(generated) == 2  # each got its own id
    assert all(isinstance(i, str) and len(i) == 32 for i in generated)


async def test_event_payload_round_trips_and_non_json_is_kept(store: Store) -> None:
    payload = '{"type":"sos","note":"张阿姨","n":1}'
    await store.store_event(event("btn-1", payload=payload))
    await store.store_event(event("btn-2", payload="AA 55 0C 01 \x00 garbage"))
    (one,) = await events_of(store, "btn-1")
    assert json.loads(str(one[4])) == json.loads(payload)
    (two,) = await events_of(store, "btn-2")
    assert json.loads(str(two[4])) == "AA 55 0C 01 \x00 garbage"


async def test_event_time_round_trips_as_the_same_instant(store: Store) -> None:
    ts = datetime(2026, 3, 15, 1, 2, 3, 456789, tzinfo=CST)  # 2026-03-14 17:02 UTC
    await store.store_event(event(ts=ts, event_id="tz"))
    (row,) = await events_of(store, "btn-1")
    got = row[0]
    assert isinstance(got, datetime)
    assert got.utcoffset() is not None
    assert got == ts
    assert got.astimezone(UTC).microsecond == 456789


async def test_naive_datetimes_are_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="naive"):
        await store.store_event(event(ts=datetime(2026, 3, 14, 9, 0)))


# -- readings ------------------------------------------------------------------------------
def reading(device: str, metric: str, ts: datetime, value: float) -> Reading:
    return Reading(device_id=device, metric=metric, ts=ts, value=value)


async def test_readings_batch_counts_new_and_duplicate(store: Store) -> None:
    batch = [reading("th-1", "temperature", T0 + timedelta(seconds=i), 20.0 + i) for i in range(10)]
    batch += [reading("th-1", "humidity", T0 + timedelta(seconds=i), 40.0) for i in range(5)]
    assert await store.store_batch(batch, []) == BatchResult(15, 0)

    # A redelivered batch, plus 3 new readings and a duplicate inside the batch itself.
    extra = [reading("th-2", "temperature", T0, 1.0), reading("th-2", "temperature", T0, 1.0)]
    extra.append(reading("th-2", "co_ppm", T0, 0.0))
    extra.append(reading("th-3", "co_ppm", T0, 0.0))
    assert await store.store_batch(batch + extra, []) == BatchResult(3, 16)

    assert await count(store, "SELECT count(*) FROM v_readings") == 18
    rows = await store.query(
        "SELECT value FROM v_readings WHERE device_id = ? AND metric = ? ORDER BY time",
        ("th-1", "temperature"),
    )
    assert [r[0] for r in rows] == [20.0 + i for i in range(10)]


async def test_empty_batch_is_fine(store: Store) -> None:
    assert await store.store_batch([], []) == BatchResult(0, 0)


async def test_reading_instants_round_trip_across_offsets(store: Store) -> None:
    stamps = [
        datetime(2026, 3, 14, 23, 59, 59, 999999, tzinfo=UTC),
        datetime(2026, 3, 15, 7, 59, 59, 999999, tzinfo=CST),  # the same instant as above
        datetime(2026, 3, 14, 20, 30, 0, 1, tzinfo=NST),  # 2026-03-15 00:00:00.000001 UTC
        datetime(2026, 3, 14, 0, 0, 0, 0, tzinfo=UTC),
    ]
    result = await store.store_batch(
        [reading("d", "t", ts, float(i)) for i, ts in enumerate(stamps)], []
    )
    assert result == BatchResult(3, 1)  # the first two are one instant
    rows = await store.query("SELECT time, value FROM v_readings ORDER BY time")
    assert [r[0] for r in rows] == sorted({stamps[0], stamps[2], stamps[3]})
    assert all(isinstance(r[0], datetime) and r[0].utcoffset() is not None for r in rows)

    # Datetime parameters compare as instants too, whatever their offset.
    since = datetime(2026, 3, 15, 8, 0, 0, tzinfo=CST)  # 2026-03-15 00:00 UTC
    later = await store.query(
        "SELECT value FROM v_readings WHERE time >= ? ORDER BY time", (since,)
    )
    assert [r[0] for r in later] == [2.0]


_ids = st.sampled_from(["a", "b", "c"])
_metrics = st.sampled_from(["temperature", "humidity"])
_stamps = st.sampled_from(
    [
        T0,
        T0.astimezone(CST),  # same instant, other offset: a duplicate
        T0 + timedelta(microseconds=1),
        T0 + timedelta(seconds=1),
        T0.astimezone(NST) + timedelta(days=1),
    ]
)
_readings = st.lists(
    st.builds(
        Reading,
        device_id=_ids,
        metric=_metrics,
        ts=_stamps,
        value=st.floats(allow_nan=False, allow_infinity=False, width=32),
    ),
    max_size=40,
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=_readings, tag=st.text(alphabet=string.ascii_lowercase, min_size=8, max_size=8))
async def test_any_batch_stores_each_distinct_key_once(
    store: Store, batch: list[Reading], tag: str
) -> None:
    # One store serves every example: a fresh device prefix keeps the examples apart.
    rows = [Reading(f"{tag}-{r.device_id}", r.metric, r.ts, r.value) for r in batch]
    distinct = {(r.device_id, r.metric, r.ts) for r in rows}  # aware datetimes hash by instant
    before = await count(
        store, "SELECT count(*) FROM v_readings WHERE device_id LIKE ?", f"{tag}-%"
    )
    first = await store.store_batch(rows, [])
    again = await store.store_batch(rows, [])
    after = await count(store, "SELECT count(*) FROM v_readings WHERE device_id LIKE ?", f"{tag}-%")
    assert first.readings_new == after - before
    assert first.readings_duplicate == len(rows) - first.readings_new
    assert again == BatchResult(0, len(rows))
    if before == 0:
        assert after == len(distinct)


# -- device health -------------------------------------------------------------------------
async def device_row(store: Store, device: str) -> tuple[object, ...]:
    (row,) = await store.query("SELECT * FROM v_devices WHERE device_id = ?", (device,))
    return row


async def test_device_health_merge(store: Store) -> None:
    # The recorded state is the subject here, not silence: no timeout makes it offline.
    await store.set_device_timeouts({"default": 1e9})
    await store.upsert_devices([DeviceRecord("btn-1", DeviceType.SOS_BUTTON, name="张阿姨的按钮")])
    t = T0
    await store.record_health(
        [DeviceHealth("btn-1", t, battery=80, online=True, fw="1.0", rssi=-60)]
    )
    # An older status arriving late does not overwrite anything newer.
    await store.record_health(
        [DeviceHealth("btn-1", t - timedelta(minutes=5), battery=50, online=False)]
    )
    row = await device_row(store, "btn-1")
    assert row[7] == t
    assert row[8] == 80
    assert bool(row[9]) is True

    # Newer, without battery or online: only last_seen moves.
    await store.record_health([DeviceHealth("btn-1", t + timedelta(minutes=1))])
    row = await device_row(store, "btn-1")
    assert (row[7], row[8], bool(row[9])) == (t + timedelta(minutes=1), 80, True)

    # The will says offline, with an older timestamp than the last telemetry but newer than
    # the last online change: it applies; battery from that older message does not.
    await store.record_health(
        [DeviceHealth("btn-1", t + timedelta(seconds=30), battery=10, online=False)]
    )
    row = await device_row(store, "btn-1")
    assert (row[7], row[8], bool(row[9])) == (t + timedelta(minutes=1), 80, False)

    # A stale "online" (older than that offline) does not flip it back.
    await store.record_health([DeviceHealth("btn-1", t + timedelta(seconds=10), online=True)])
    assert bool((await device_row(store, "btn-1"))[9]) is False

    # Newer battery wins; several updates for one device in one call apply in order.
    await store.record_health(
        [
            DeviceHealth("btn-1", t + timedelta(minutes=3), battery=70),
            DeviceHealth("btn-1", t + timedelta(minutes=2), battery=75, online=True),
        ]
    )
    row = await device_row(store, "btn-1")
    assert (row[7], row[8], bool(row[9])) == (t + timedelta(minutes=3), 70, True)
    fw = await store.query("SELECT fw, rssi FROM device_state WHERE device_id = ?", ("btn-1",))
    assert fw == [("1.0", -60.0)]


async def test_health_travels_with_the_batch(store: Store) -> None:
    # The recorded state is the subject here, not silence: no timeout makes it offline.
    await store.set_device_timeouts({"default": 1e9})
    await store.upsert_devices([DeviceRecord("th-1", DeviceType.TEMP_HUMIDITY)])
    result = await store.store_batch(
        [reading("th-1", "battery", T0, 55.0)], [DeviceHealth("th-1", T0, battery=55, online=True)]
    )
    assert result == BatchResult(1, 0)
    row = await device_row(store, "th-1")
    assert (row[7], row[8], bool(row[9])) == (T0, 55, True)


async def test_v_devices_for_a_device_never_seen(store: Store) -> None:
    await store.upsert_devices(
        [
            DeviceRecord(
                "smk-1",
                DeviceType.SMOKE_DETECTOR,
                name="厨房烟感",
                resident_id="r1",
                building="3",
                unit="2",
                room="501",
            )
        ]
    )
    await store.record_health([DeviceHealth("ghost", T0, battery=1)])  # not registered: harmless
    row = await device_row(store, "smk-1")
    assert row[:7] == ("smk-1", "smoke_detector", "厨房烟感", "r1", "3", "2", "501")
    assert row[7] is None
    assert row[8] is None
    assert bool(row[9]) is False
    assert await count(store, "SELECT count(*) FROM v_devices") == 1


# -- pending devices -----------------------------------------------------------------------
async def test_pending_devices_upsert(store: Store) -> None:
    def seen(device: str, ts: datetime, kind: str, ev: EventType | None = None) -> PendingSighting:
        return PendingSighting(device, ts, kind, f'{{"kind":"{kind}"}}', ev)

    await store.record_pending(
        [
            seen("new-1", T0, "telemetry"),
            seen("new-1", T0 + timedelta(seconds=2), "event", EventType.SOS),
            seen("new-2", T0 + timedelta(seconds=1), "status"),
        ]
    )
    # A late, older sighting counts but does not replace the newest payload.
    await store.record_pending(
        [
            seen("new-1", T0 - timedelta(seconds=9), "event", EventType.SOS),
            seen("new-1", T0 + timedelta(seconds=1), "event", EventType.DOOR_OPEN),
        ]
    )
    pending = await store.pending_devices()
    assert [p.device_id for p in pending] == ["new-1", "new-2"]  # newest first
    one = pending[0]
    assert one.messages == 4
    assert one.sos_count == 2
    assert one.first_seen == T0 - timedelta(seconds=9)
    assert one.last_seen == T0 + timedelta(seconds=2)
    assert one.last_kind == "event"
    assert one.last_payload == '{"kind":"event"}'
    two = pending[1]
    assert (two.messages, two.sos_count, two.last_kind) == (1, 0, "status")
    assert two.first_seen == two.last_seen == T0 + timedelta(seconds=1)


# -- registry ------------------------------------------------------------------------------
DEVICES = [
    DeviceRecord("btn-1", DeviceType.SOS_BUTTON, name="一键呼叫", resident_id="r1", room="101"),
    DeviceRecord(
        "bus-7",
        DeviceType.PENDANT,
        serial_port="bus1",
        serial_addr=0x0A0B0C0D,
        attributes=(("model", "X1"), ("备注", "门口")),
    ),
    DeviceRecord("z-1", DeviceType.WATER_SENSOR, zigbee_name="kitchen_leak"),
]
RESIDENTS = [
    ResidentRecord(
        "r1",
        "张秀英",
        phone="13800000000",
        building="3",
        lives_alone=True,
        medical_notes="高血压",
        contacts=(Contact("儿子", "13900000000"), Contact("女儿", "13700000000")),
        responders=("v-3", "v-1", "v-2"),
        attributes=(("floor", "5"),),
    ),
    ResidentRecord("r2", "李建国"),
]
RESPONDERS = [
    ResponderRecord(
        "v-1",
        "王志愿",
        "volunteer",
        phone="13600000000",
        channels=("mqtt", "json://127.0.0.1:9/"),
        skills=("first_aid",),
        on_duty="08:00-20:00",
    ),
    ResponderRecord("duty", "服务站值班", "duty"),
]


async def updated_at(store: Store, table: str, key: str) -> dict[str, object]:
    rows = await store.query(f"SELECT {key}, updated_at FROM {table}")
    return dict((str(k), v) for k, v in rows)


@pytest.mark.parametrize(
    ("table", "key", "rows"),
    [
        ("devices", "device_id", DEVICES),
        ("residents", "resident_id", RESIDENTS),
        ("responders", "responder_id", RESPONDERS),
    ],
)
async def test_identical_re_upsert_changes_nothing(
    store: Store, table: str, key: str, rows: list[object]
) -> None:
    upsert = getattr(store, f"upsert_{table}")
    assert await upsert(rows) == UpsertResult(inserted=len(rows), updated=0, unchanged=0)
    stamps = await updated_at(store, table, key)
    assert await upsert(rows) == UpsertResult(inserted=0, updated=0, unchanged=len(rows))
    assert await updated_at(store, table, key) == stamps


async def test_upsert_updates_only_what_changed(store: Store) -> None:
    await store.upsert_devices(DEVICES)
    before = await updated_at(store, "devices", "device_id")
    changed = DeviceRecord(
        "bus-7",
        DeviceType.PENDANT,
        serial_port="bus1",
        serial_addr=0x0A0B0C0D,
        attributes=(("备注", "门口"), ("model", "X2")),
    )
    new = DeviceRecord("co-1", DeviceType.CO_DETECTOR)
    result = await store.upsert_devices([DEVICES[0], changed, new])
    assert result == UpsertResult(inserted=1, updated=1, unchanged=1)
    after = await updated_at(store, "devices", "device_id")
    assert after["btn-1"] == before["btn-1"]
    assert after["bus-7"] != before["bus-7"]
    rows = await store.query(
        "SELECT serial_addr, attributes FROM devices WHERE device_id = ?", ("bus-7",)
    )
    assert rows[0][0] == 0x0A0B0C0D
    assert json.loads(str(rows[0][1])) == {"model": "X2", "备注": "门口"}


async def test_attribute_order_alone_is_no_change(store: Store) -> None:
    await store.upsert_devices([DEVICES[1]])
    reordered = DeviceRecord(
        "bus-7",
        DeviceType.PENDANT,
        serial_port="bus1",
        serial_addr=0x0A0B0C0D,
        attributes=(("备注", "门口"), ("model", "X1")),
    )
    assert await store.upsert_devices([reordered]) == UpsertResult(0, 0, 1)


async def test_resident_fields_and_assigned_responders_keep_order(store: Store) -> None:
    await store.upsert_residents(RESIDENTS)
    order = await store.query(
        "SELECT responder_id FROM resident_responders WHERE resident_id = ? ORDER BY position",
        ("r1",),
    )
    assert [r[0] for r in order] == ["v-3", "v-1", "v-2"]
    (row,) = await store.query(
        "SELECT name, lives_alone, contacts, medical_notes FROM residents WHERE resident_id = ?",
        ("r1",),
    )
    assert row[0] == "张秀英"
    assert bool(row[1]) is True
    assert json.loads(str(row[2])) == [
        {"name": "儿子", "phone": "13900000000"},
        {"name": "女儿", "phone": "13700000000"},
    ]

    # Only the order of the responders changes: that is an update, and the new order holds.
    reordered = dataclasses.replace(RESIDENTS[0], responders=("v-1", "v-3"))
    assert await store.upsert_residents([reordered, RESIDENTS[1]]) == UpsertResult(0, 1, 1)
    order = await store.query(
        "SELECT responder_id FROM resident_responders WHERE resident_id = ? ORDER BY position",
        ("r1",),
    )
    assert [r[0] for r in order] == ["v-1", "v-3"]


async def test_same_id_twice_in_one_upsert(store: Store) -> None:
    a = DeviceRecord("d", DeviceType.DOOR_CONTACT, name="a")
    b = DeviceRecord("d", DeviceType.DOOR_CONTACT, name="b")
    assert await store.upsert_devices([a, b]) == UpsertResult(1, 1, 0)
    assert await store.query("SELECT name FROM devices") == [("b",)]


async def test_existing_ids_and_known_devices(store: Store) -> None:
    await store.upsert_devices(DEVICES)
    await store.upsert_residents(RESIDENTS)
    await store.upsert_responders(RESPONDERS)
    assert await store.existing_ids("devices", ["btn-1", "nope", "z-1"]) == {"btn-1", "z-1"}
    assert await store.existing_ids("residents", ["r2", "r9"]) == {"r2"}
    assert await store.existing_ids("responders", ["duty"]) == {"duty"}
    assert await store.existing_ids("devices", []) == set()
    with pytest.raises(ValueError, match="unknown table"):
        await store.existing_ids("events", ["x"])
    assert await store.known_device_ids() == {"btn-1", "bus-7", "z-1"}
    assert await store.device_exists("bus-7") is True
    assert await store.device_exists("bus-8") is False


# -- query() -------------------------------------------------------------------------------
async def test_query_is_read_only(store: Store) -> None:
    await store.upsert_devices(DEVICES)
    with pytest.raises((sqlite3.DatabaseError, psycopg.errors.ReadOnlySqlTransaction)):
        await store.query("DELETE FROM devices")
    assert await count(store, "SELECT count(*) FROM devices") == 3


async def test_query_placeholders_and_percent_signs(store: Store) -> None:
    await store.upsert_devices(DEVICES)
    rows = await store.query(
        "SELECT device_id, '50%' FROM devices WHERE name LIKE '%呼叫%' AND device_id = ?",
        ("btn-1",),
    )
    assert rows == [("btn-1", "50%")]
    rows = await store.query("SELECT '?' AS q, ? AS p", ("x",))
    assert rows == [("?", "x")]


async def test_a_broken_device_clock_loses_nothing(store: Store) -> None:
    # Reset clocks send year 1 or garbage far in the future; the event must still be kept.
    first = datetime(1, 1, 1, tzinfo=UTC)
    last = datetime.max.replace(tzinfo=UTC)
    result = await store.store_batch(
        [reading("d", "t", first, 1.0), reading("d", "t", last, 2.0)], []
    )
    assert result == BatchResult(2, 0)
    assert await store.store_event(event(ts=first, seq=1))
    assert await store.store_event(event(ts=last, seq=1))
    rows = await store.query("SELECT time FROM v_readings ORDER BY time")
    assert [r[0] for r in rows] == [first, last]
    assert [r[0] for r in await events_of(store, "btn-1")] == [first, last]


async def test_registry_reads_back_exactly_what_was_imported(store: Store) -> None:
    await store.upsert_devices(DEVICES)
    await store.upsert_residents(RESIDENTS)
    await store.upsert_responders(RESPONDERS)
    assert await store.devices() == sorted(DEVICES, key=lambda d: d.device_id)
    assert await store.residents() == sorted(RESIDENTS, key=lambda r: r.resident_id)
    assert await store.responders() == sorted(RESPONDERS, key=lambda r: r.responder_id)
