"""Device-offline and welfare checks fire at the configured times (a controllable clock, a
real store, no waiting)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from alerts.config import AlertsSettings
from alerts.engine import AlertEngine
from alerts.models import AlertState, Priority
from alerts.store import EngineStore
from devices.feedback import FeedbackQueue
from devices.models import DeviceHealth, Event, EventType
from gateway.registry import LiveRegistry
from gateway.storage.factory import open_store
from tests.alerts.conftest import seed_community
from tests.harness.webhook import Receiver

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def engine(db_url: str, phones: Receiver) -> AsyncIterator[tuple[AlertEngine, Clock]]:
    await seed_community(db_url, phones)
    store = open_store(db_url)
    await store.open()
    registry = LiveRegistry(store)
    await registry.load()
    clock = Clock()
    settings = AlertsSettings(
        offline_after={"default": 3600, "sos_button": 600}, welfare_after=24 * 3600
    )
    engine = AlertEngine(
        store=store,  # type: ignore[arg-type]
        settings=settings,
        registry=registry,
        feedback=FeedbackQueue(),
        clock=clock,
    )
    try:
        yield engine, clock
    finally:
        await store.close()


def _store(engine: AlertEngine) -> EngineStore:
    return engine.store


async def test_sos_button_offline_is_p2_at_its_timeout_and_clears_when_back(
    engine: tuple[AlertEngine, Clock],
) -> None:
    eng, clock = engine
    store = _store(eng)
    await store.record_health(
        [
            DeviceHealth("btn-1", last_seen=T0, online=True),
            DeviceHealth("th-1", last_seen=T0, online=True),
        ]
    )
    clock.now = T0 + timedelta(seconds=599)
    assert await eng.check_offline() == 0
    clock.now = T0 + timedelta(seconds=601)
    assert await eng.check_offline() == 1
    assert await eng.check_offline() == 0  # the same silence: still one alert
    alerts = await store.list_alerts()
    assert [(a.kind, a.device_id, a.priority) for a in alerts] == [
        ("device_offline", "btn-1", Priority.P2)
    ]
    clock.now = T0 + timedelta(seconds=3601)  # the thermometer's longer timeout
    await eng.check_offline()
    th = [a for a in await store.list_alerts() if a.device_id == "th-1"]
    assert [(a.kind, a.priority) for a in th] == [("device_offline", Priority.P3)]

    await store.record_health([DeviceHealth("btn-1", last_seen=clock.now, online=True)])
    await eng.check_offline()
    states = {a.device_id: a.state for a in await store.list_alerts()}
    assert states["btn-1"] is AlertState.CANCELLED
    assert states["th-1"] is AlertState.OPEN


async def test_will_offline_is_noticed_at_the_next_check(engine: tuple[AlertEngine, Clock]) -> None:
    eng, clock = engine
    await _store(eng).record_health([DeviceHealth("btn-1", last_seen=T0, online=False)])
    clock.now = T0 + timedelta(seconds=1)
    assert await eng.check_offline() == 1


async def _motion(store: EngineStore, at: datetime) -> None:
    await store.store_event(Event("motion-1", EventType.MOTION, at, at, event_id=uuid.uuid4().hex))


async def test_welfare_check_after_hours_without_activity(
    engine: tuple[AlertEngine, Clock],
) -> None:
    eng, clock = engine
    store = _store(eng)
    await _motion(store, T0)
    clock.now = T0 + timedelta(hours=23, minutes=59)
    assert await eng.check_welfare() == 0
    clock.now = T0 + timedelta(hours=24, minutes=1)
    assert await eng.check_welfare() == 1
    assert await eng.check_welfare() == 0
    alerts = await store.list_alerts()
    assert [(a.kind, a.resident_id, a.device_id, a.priority) for a in alerts] == [
        ("welfare_check", "r1", None, Priority.P2)
    ]


async def test_no_welfare_alert_for_time_before_monitoring_started(
    engine: tuple[AlertEngine, Clock],
) -> None:
    eng, clock = engine
    clock.now = eng.started_at + timedelta(hours=23)
    assert await eng.check_welfare() == 0  # no activity ever, but we only watched 23 h
    clock.now = eng.started_at + timedelta(hours=25)
    assert await eng.check_welfare() == 1
