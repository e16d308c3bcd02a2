"""Device health from messages: newest observation wins, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.health import health_of, merge
from devices.models import DeviceState, Event, EventType, Reading, Status, Telemetry

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


def test_telemetry_battery_and_rssi() -> None:
    tel = Telemetry("d", T0, T0, (Reading("d", "battery", T0, 87.6), Reading("d", "rssi", T0, -70)))
    health = health_of(tel)
    assert (health.battery, health.rssi, health.online) == (88, -70, True)


def test_will_marks_offline_and_event_online() -> None:
    assert health_of(Status("d", DeviceState.OFFLINE, T0)).online is False
    assert health_of(Event("d", EventType.SOS, T0, T0, battery=50)).online is True


def test_merge_keeps_newest_regardless_of_order() -> None:
    old = health_of(Status("d", DeviceState.ONLINE, T0, battery=90, fw="1"))
    new = health_of(Status("d", DeviceState.OFFLINE, T0 + timedelta(seconds=5)))
    for merged in (merge(old, new), merge(new, old)):
        assert merged.online is False
        assert merged.last_seen == T0 + timedelta(seconds=5)
        assert (merged.battery, merged.fw) == (90, "1")
