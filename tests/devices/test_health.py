"""Device health from messages: newest observation wins, field by field."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from devices.health import HealthThrottle, health_of, merge
from devices.models import (
    DeviceHealth,
    DeviceState,
    Event,
    EventType,
    Reading,
    Status,
    Telemetry,
)

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


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _h(device: str, *, battery: int | None = 90, online: bool | None = True) -> DeviceHealth:
    return DeviceHealth(device, datetime(2026, 11, 27, tzinfo=UTC), battery=battery, online=online)


def test_throttle_writes_first_sight_then_at_most_every_interval() -> None:
    clock = FakeClock()
    throttle = HealthThrottle(5.0, clock=clock)
    first = [_h("a"), _h("b")]
    assert throttle.select(first) == first
    throttle.written(first)
    clock.now += 4.9
    assert throttle.select([_h("a"), _h("b")]) == []
    clock.now += 0.2
    assert [h.device_id for h in throttle.select([_h("a")])] == ["a"]


def test_throttle_writes_a_change_technicians_act_on_at_once() -> None:
    clock = FakeClock()
    throttle = HealthThrottle(5.0, clock=clock)
    throttle.written([_h("a")])
    clock.now += 0.1
    assert throttle.select([_h("a", battery=15)]) == [_h("a", battery=15)]
    assert throttle.select([_h("a", online=False)]) == [_h("a", online=False)]


def test_throttle_only_remembers_what_was_written() -> None:
    """A write that failed (select without written) is tried again with the next batch."""
    throttle = HealthThrottle(5.0, clock=FakeClock())
    assert throttle.select([_h("a")]) == [_h("a")]
    assert throttle.select([_h("a")]) == [_h("a")]


def test_throttle_memory_is_bounded() -> None:
    throttle = HealthThrottle(5.0, clock=FakeClock(), max_devices=10)
    for n in range(100):
        throttle.written([_h(f"d{n}")])
    assert len(throttle._written) <= 10
