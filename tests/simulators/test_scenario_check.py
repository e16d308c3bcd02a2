"""Reading what the gateway did, on both backends: alerts opened or joined, notifications,
and the decisions of the checks."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from alerts.models import NewAlert, PolicyStep, Priority, TimelineEntry
from alerts.store import AlertStore
from devices.models import DeviceType
from devices.records import DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.factory import open_store
from simulators.scenario import (
    AlertExpect,
    AlertFilter,
    EscalationExpect,
    NoAlertExpect,
)
from simulators.scenario_check import Observer, Reference, check, target_matches


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Any]:
    opened = open_store(db_url)
    await opened.open()
    await opened.upsert_responders(
        [
            ResponderRecord("vol-1", "王志愿", "volunteer"),
            ResponderRecord("desk", "值班台", "duty"),
        ]
    )
    await opened.upsert_residents([ResidentRecord("r-1", "张秀英", building="7")])
    await opened.upsert_devices(
        [
            DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id="r-1", building="3"),
            DeviceRecord("smoke-1", DeviceType.SMOKE_DETECTOR, resident_id="r-1"),
        ]
    )
    yield opened
    await opened.close()


def new_alert(kind: str, device: str | None, at: datetime, key: str) -> NewAlert:
    return NewAlert(
        id=key,
        kind=kind,
        priority=Priority.P1,
        opened_at=at,
        steps=(PolicyStep(("assigned",), 60.0),),
        first_due_at=at,
        device_id=device,
        resident_id="r-1",
        trigger_key=key,
    )


def notify(alert_id: str, at: datetime, recipient: str) -> TimelineEntry:
    detail = json.dumps({"recipient": recipient, "channel": "mqtt", "ok": True})
    return TimelineEntry(alert_id, at, "system", "notify", detail)


async def test_opened_joined_and_notified(store: Any) -> None:
    alerts = cast(AlertStore, store)
    now = datetime.now(UTC)
    ref = Reference(now, time.monotonic())
    await alerts.open_or_join(new_alert("sos", "btn-1", now - timedelta(minutes=5), "old"))
    await alerts.open_or_join(new_alert("sos", "btn-1", now + timedelta(seconds=0.2), "again"))
    await alerts.open_or_join(new_alert("smoke", "smoke-1", now + timedelta(seconds=0.3), "s"))
    await alerts.add_timeline(
        [
            notify("s", now + timedelta(seconds=0.4), "responder:vol-1"),
            notify("s", now + timedelta(seconds=1.5), "responder:desk"),
            notify("old", now - timedelta(minutes=5), "responder:vol-1"),
        ]
    )
    observer = Observer(store)
    seen = {a.id: a for a in await observer.alerts_since(now)}
    assert set(seen) == {"old", "s"}
    assert seen["old"].opened is False  # joined by the repeat, opened before the window
    assert seen["old"].building == "3"  # the device's building
    assert seen["s"].opened is True
    assert seen["s"].building == "7"  # no building on the device: the resident's
    notes = await observer.notifications_since(now)
    assert [(n.alert_id, n.recipient, n.ok) for n in notes] == [
        ("s", "responder:vol-1", True),
        ("s", "responder:desk", True),
    ]
    roles = await observer.roles()
    assert target_matches("role:duty", "responder:desk", roles)
    assert not target_matches("role:duty", "responder:vol-1", roles)
    assert target_matches("contacts", "contact:r-1:0", roles)
    assert target_matches("responder:vol-1", "responder:vol-1", roles)

    sos = await check(
        observer, AlertExpect(1, AlertFilter(kind="sos"), 0.0, 1.0), ref, 1.0, float("-inf")
    )
    assert sos.passed
    assert "joined an alert already active before the scenario" in sos.detail
    two = await check(
        observer,
        AlertExpect(2, AlertFilter(priority=Priority.P1), 0.0, 1.0, count=3),
        ref,
        0.3,
        float("-inf"),
    )
    assert not two.passed
    assert two.detail.startswith("2 of 3 seen")
    desk = EscalationExpect(3, "role:duty", AlertFilter(kind="smoke"), 0.0, 5.0)
    assert (await check(observer, desk, ref, 5.0, float("-inf"))).passed
    early = await check(observer, desk, ref, 5.0, 3.0)
    assert not early.passed
    assert early.detail.startswith("too early: responder:desk notified +1.50s")
    late = await check(observer, desk, ref, 1.0, float("-inf"))
    assert not late.passed
    assert late.detail.startswith("too late")
    quiet = await check(
        observer, NoAlertExpect(4, AlertFilter(building="3"), 0.0, 1.0), ref, 0.5, float("-inf")
    )
    assert not quiet.passed
    assert "P1 sos btn-1" in quiet.detail
    none = await check(
        observer, NoAlertExpect(5, AlertFilter(kind="gas"), 0.0, 1.0), ref, 0.2, float("-inf")
    )
    assert none.passed
