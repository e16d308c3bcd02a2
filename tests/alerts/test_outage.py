"""The outage dispatcher (database away): who is told, what they read, what is kept; and the
engine opening the alert later from that notice (same id, next step, timeline note)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerts.channels.base import Delivery, Notice, Notifier, Recipient, RetryPolicy
from alerts.config import AlertsSettings
from alerts.engine import AlertEngine
from alerts.models import Priority
from alerts.outage import OutageDispatcher, OutageNotice
from devices.feedback import FeedbackQueue
from devices.models import DeviceType, Event, EventType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.sqlite import SqliteStore
from tests.alerts.registry import InMemoryRegistry

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=UTC)
POLICIES = {
    "P1": {
        "steps": [
            {"targets": ["assigned"], "ack_timeout": "60s"},
            {"targets": ["role:duty"], "ack_timeout": "10m"},
        ]
    },
    "P2": {"steps": [{"targets": ["assigned"], "ack_timeout": "5m"}]},
}


@dataclass
class Phones:
    """A channel for ``fake://`` specs that records what it was given (``fake://down``
    fails)."""

    sent: list[tuple[Recipient, Notice]] = field(default_factory=list)

    def handles(self, spec: str) -> bool:
        return spec.startswith("fake://")

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        if spec == "fake://down":
            return Delivery(False, spec, "provider down", retryable=False)
        self.sent.append((recipient, notice))
        return Delivery(True, spec)


def directory(
    *, assigned: tuple[str, ...] = ("v-1",), v1_channel: str = "fake://v-1"
) -> InMemoryRegistry:
    return InMemoryRegistry(
        responders=[
            ResponderRecord("v-1", "王志愿", "volunteer", channels=(v1_channel,)),
            ResponderRecord("duty", "服务站值班", "duty", channels=("fake://duty",)),
        ],
        residents=[
            ResidentRecord(
                "r1",
                "张秀英",
                phone="13800000000",
                building="3",
                unit="1",
                room="201",
                contacts=(Contact("儿子", "13900000000"),),
                responders=assigned,
            )
        ],
        devices=[
            DeviceRecord("btn-1", DeviceType.SOS_BUTTON, resident_id="r1"),
            DeviceRecord("door-1", DeviceType.DOOR_CONTACT, resident_id="r1"),
        ],
    )


def press(device: str = "btn-1", kind: EventType = EventType.SOS) -> Event:
    return Event(device, kind, NOW, NOW, event_id=f"{device}-{kind}")


def dispatcher(d: InMemoryRegistry, phones: Phones, kept: list[OutageNotice]) -> OutageDispatcher:
    async def keep(notice: OutageNotice) -> None:
        kept.append(notice)

    return OutageDispatcher(
        settings=AlertsSettings(policies=POLICIES),
        registry=d,
        notifier=Notifier([phones], retry=RetryPolicy(attempts=1)),
        clock=lambda: NOW,
        on_notice=keep,
    )


async def test_a_press_reaches_step_one_in_degraded_mode_and_is_kept() -> None:
    phones, kept = Phones(), []
    outage = dispatcher(directory(), phones, kept)
    outage.start(press())
    notice = await outage.wait_for("id:btn-1-sos")
    assert notice is not None
    assert kept == [notice]
    assert notice.targets == ("responder:v-1",)
    assert notice.reached == 1
    assert notice.step == 0
    assert notice.at == NOW
    [(recipient, sent)] = phones.sent
    assert recipient.key == "responder:v-1"
    assert sent.accept_url is None
    assert sent.decline_url is None
    body = sent.message.body
    assert body.startswith("⚠ 系统降级运行")
    assert "张秀英" in body
    assert "13800000000" in body
    assert "3号楼1单元201" in body
    assert notice.alert_id in body
    assert sent.data["degraded"] is True
    assert sent.data["accept_url"] is None


async def test_nobody_reached_goes_to_the_duty_desk() -> None:
    phones, kept = Phones(), []
    outage = dispatcher(directory(v1_channel="fake://down"), phones, kept)
    notice = await outage.notify(press())
    assert notice is not None
    assert notice.targets == ("responder:v-1", "responder:duty")
    assert notice.reached == 1
    assert [r.key for r, _ in phones.sent] == ["responder:duty"]


async def test_no_step_one_targets_falls_back_to_the_desk() -> None:
    phones, kept = Phones(), []
    outage = dispatcher(directory(assigned=()), phones, kept)
    notice = await outage.notify(press())
    assert notice is not None
    assert notice.targets == ("responder:duty",)


@pytest.mark.parametrize(
    ("device", "kind"),
    [
        ("btn-1", EventType.LOW_BATTERY),
        ("door-1", EventType.DOOR_OPEN),
        ("btn-1", EventType.CANCEL),
    ],
)
async def test_only_p1_and_p2_events_are_notified(device: str, kind: EventType) -> None:
    phones, kept = Phones(), []
    outage = dispatcher(directory(), phones, kept)
    outage.start(press(device, kind))
    assert await outage.wait_for(f"id:{device}-{kind}") is None
    assert phones.sent == []
    assert kept == []


async def test_the_same_event_is_notified_once() -> None:
    phones, kept = Phones(), []
    outage = dispatcher(directory(), phones, kept)
    outage.start(press())
    await outage.wait_for("id:btn-1-sos")
    outage.start(press())  # a redelivery of the same press, still during the outage
    await outage.wait_for("id:btn-1-sos")
    assert len(phones.sent) == 1
    outage.forget("id:btn-1-sos")
    assert await outage.wait_for("id:btn-1-sos") is None


async def test_the_engine_opens_the_alert_from_the_notice(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "scgw.db"))
    await store.open()
    try:
        engine = AlertEngine(
            store=store,
            settings=AlertsSettings(policies=POLICIES),
            registry=directory(),
            feedback=FeedbackQueue(),
        )
        notice = OutageNotice(
            "id:btn-1-sos", "a" * 32, NOW + timedelta(seconds=2), 0, ("responder:v-1",), 1
        )
        await engine.handle_event(press(), duplicate=False, notice=notice)
        alert = await store.get_alert("a" * 32)
        assert alert is not None
        assert alert.priority is Priority.P1
        assert alert.step_index == 1
        assert alert.next_due_at == notice.at + timedelta(seconds=60)
        await engine.handle_event(press(), duplicate=True, notice=notice)  # a replay again
        notes = [e for e in await store.timeline(alert.id) if e.action == "outage_notified"]
        assert len(notes) == 1
        detail = json.loads(notes[0].detail)
        assert detail["note"] == f"notified during database outage at {notice.at.isoformat()}"
        assert detail["targets"] == ["responder:v-1"]
        assert len(await store.list_alerts()) == 1
    finally:
        await store.close()
