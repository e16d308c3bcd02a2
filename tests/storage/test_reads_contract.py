"""The typed read queries (gateway/storage/reads.py): the same answers on SQLite and
PostgreSQL. They replace SQL that other layers used to send through ``Store.query``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerts.models import AlertState, NewAlert, PolicyStep, Priority, TimelineEntry
from alerts.store import DevicePresence
from devices.models import DeviceHealth, DeviceType, Event, EventType
from devices.records import DeviceRecord, ResidentRecord
from gateway.storage.base import Store
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.storage.conftest import CST, T0

S = timedelta(seconds=1)
STEPS = (PolicyStep(("role:duty",), 60.0),)


def typed(store: Store) -> SqliteStore | PostgresStore:
    assert isinstance(store, SqliteStore | PostgresStore)
    return store


async def _registry(store: Store) -> None:
    await store.upsert_residents([ResidentRecord("r1", "张秀英"), ResidentRecord("r2", "李")])
    await store.upsert_devices(
        [
            DeviceRecord("btn-1", DeviceType.SOS_BUTTON, name="床头", resident_id="r1"),
            DeviceRecord("door-1", DeviceType.DOOR_CONTACT, resident_id="r1", building="3"),
            DeviceRecord("pir-2", DeviceType.MOTION_SENSOR, resident_id="r2"),
            DeviceRecord("smoke-9", DeviceType.SMOKE_DETECTOR, building="3"),
        ]
    )


async def test_device_presence_lists_every_device_with_its_state(store: Store) -> None:
    s = typed(store)
    await _registry(store)
    await store.record_health(
        [
            DeviceHealth("btn-1", T0.astimezone(CST), battery=80, online=True),
            DeviceHealth("door-1", T0 - 10 * S, online=False),
        ]
    )
    presence = await s.device_presence()
    assert [p.device_id for p in presence] == ["btn-1", "door-1", "pir-2", "smoke-9"]
    assert presence[0] == DevicePresence("btn-1", "sos_button", "r1", T0, True)
    assert presence[1] == DevicePresence("door-1", "door_contact", "r1", T0 - 10 * S, False)
    # Never seen: no time, not online (the offline check leaves it alone).
    assert presence[3] == DevicePresence("smoke-9", "smoke_detector", None, None, False)


async def test_last_activity_per_resident(store: Store) -> None:
    s = typed(store)
    await _registry(store)
    for device, kind, at in [
        ("door-1", EventType.DOOR_OPEN, T0 - 60 * S),
        ("door-1", EventType.DOOR_CLOSE, T0 - 30 * S),
        ("pir-2", EventType.MOTION, T0 - 90 * S),
        ("btn-1", EventType.SOS, T0),  # not activity: a press is not "seen moving"
    ]:
        await store.store_event(Event(device, kind, at, at, event_id=f"{device}-{at}"))
    last = await s.last_activity(("motion", "door_open", "door_close"))
    assert last == {"r1": T0 - 30 * S, "r2": T0 - 90 * S}
    assert await s.last_activity(("motion",)) == {"r2": T0 - 90 * S}
    assert await s.last_activity(()) == {}


async def test_device_status_one_or_all(store: Store) -> None:
    s = typed(store)
    await _registry(store)
    await store.set_device_timeouts({"default": 1e9})  # silence is not the subject here
    await store.record_health([DeviceHealth("btn-1", T0, battery=15, online=True, rssi=-71.5)])
    all_rows = await s.device_status()
    assert [d.device_id for d in all_rows] == ["btn-1", "door-1", "pir-2", "smoke-9"]
    (btn,) = await s.device_status("btn-1")
    assert (btn.type, btn.name, btn.resident_id, btn.battery, btn.online, btn.rssi) == (
        "sos_button",
        "床头",
        "r1",
        15,
        True,
        -71.5,
    )
    assert btn.last_seen == T0
    (smoke,) = await s.device_status("smoke-9")
    assert (smoke.building, smoke.last_seen, smoke.battery, smoke.online) == (
        "3",
        None,
        None,
        False,
    )
    assert await s.device_status("nope") == []


async def _alert(store: Store, alert_id: str, at_offset: int, priority: Priority) -> None:
    s = typed(store)
    await s.open_or_join(
        NewAlert(
            id=alert_id,
            kind="sos",
            priority=priority,
            opened_at=T0 + at_offset * S,
            steps=STEPS,
            first_due_at=T0 + at_offset * S,
            device_id=f"dev-{alert_id}",
        )
    )


async def test_response_samples_take_the_first_answer(store: Store) -> None:
    s = typed(store)
    await _alert(store, "a1", 0, Priority.P1)
    await _alert(store, "a2", 10, Priority.P2)
    await _alert(store, "a3", 20, Priority.P1)
    await s.add_timeline(
        [
            TimelineEntry("a1", T0 + 40 * S, "responder:v-1", "accepted"),
            TimelineEntry("a1", T0 + 90 * S, "user:desk", "assigned"),
            TimelineEntry("a2", T0 + 15 * S, "responder:v-2", "declined"),
        ]
    )
    await s.transition(
        "a3",
        from_states=(AlertState.OPEN,),
        to_state=AlertState.CANCELLED,
        entry=TimelineEntry("a3", T0 + 25 * S, "device:dev-a3", "cancelled_by_cancel"),
    )
    got = {r.alert_id: r for r in await s.response_samples(T0, T0 + 15 * S)}
    assert set(got) == {"a1", "a2"}  # a3 opened after the window
    assert got["a1"].answered_at == T0 + 40 * S
    assert got["a1"].priority is Priority.P1
    assert got["a2"].answered_at is None  # a decline is not an answer
    (a3,) = await s.response_samples(T0 + 20 * S, T0 + 21 * S)
    assert a3.state is AlertState.CANCELLED


async def test_unreached_and_feed_changes(store: Store) -> None:
    s = typed(store)
    assert await s.latest_timeline_id() == 0
    await _alert(store, "a1", 0, Priority.P1)
    await _alert(store, "a2", 1, Priority.P1)
    await s.add_timeline([TimelineEntry("a2", T0 + 2 * S, "system", "step_unreached")])
    assert await s.unreached_alerts(["a1", "a2", "missing"]) == {"a2"}
    assert await s.unreached_alerts([]) == set()
    # More ids than one IN list holds: still one answer.
    many = [f"x{i}" for i in range(1200)] + ["a2"]
    assert await s.unreached_alerts(many) == {"a2"}

    latest = await s.latest_timeline_id()
    changes = await s.timeline_changes(0, 10)
    assert [(c.alert_id, c.action) for c in changes] == [
        ("a1", "opened"),
        ("a2", "opened"),
        ("a2", "step_unreached"),
    ]
    assert changes[-1].id == latest
    assert [c.id for c in changes] == sorted(c.id for c in changes)
    assert await s.timeline_changes(changes[0].id, 1) == [changes[1]]
    assert await s.timeline_changes(latest, 10) == []


@pytest.mark.parametrize("limit", [0, 1])
async def test_feed_changes_respect_the_limit(store: Store, limit: int) -> None:
    s = typed(store)
    await _alert(store, "a1", 0, Priority.P3)
    await _alert(store, "a2", 1, Priority.P3)
    assert len(await s.timeline_changes(0, limit)) == limit


async def test_device_status_online_is_judged_by_silence(store: Store) -> None:
    """One definition (SPEC, Time): online is what the device said last AND seen within its
    type's timeout, by the database's clock — the API and v_devices agree."""
    s = typed(store)
    await _registry(store)
    await store.set_device_timeouts({"default": 3600.0, "sos_button": 60.0})
    now = datetime.now(UTC)
    await store.record_health(
        [
            DeviceHealth("btn-1", now - 5 * S, online=True),
            DeviceHealth("door-1", now - 120 * S, online=True),  # within the default hour
            DeviceHealth("pir-2", now - 7200 * S, online=True),  # silent two hours
        ]
    )
    await store.record_health([DeviceHealth("smoke-9", now, online=False)])  # its will
    online = {d.device_id: d.online for d in await s.device_status()}
    assert online == {"btn-1": True, "door-1": True, "pir-2": False, "smoke-9": False}
    await store.set_device_timeouts({"default": 3600.0, "sos_button": 1.0})
    (btn,) = await s.device_status("btn-1")
    assert btn.online is False  # 5 s silent, its type allows 1 s
