"""Hysteresis and debounce: a value hovering at the limit opens one alert, not many."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from alerts.config import ThresholdSettings
from alerts.models import Priority
from alerts.thresholds import ThresholdTracker
from devices.models import Reading

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
RULE = ThresholdSettings(kind="high_temp", priority=Priority.P2, high=55, clear_high=50, debounce=2)


def readings(values: list[float], device: str = "th-1") -> list[Reading]:
    return [
        Reading(device, "temperature", T0 + timedelta(seconds=i), v) for i, v in enumerate(values)
    ]


def test_oscillating_around_the_limit_alarms_once() -> None:
    tracker = ThresholdTracker({"temperature": RULE})
    values = [54, 56, 57, 54, 56, 54, 56, 53, 56, 52, 57]  # never below the clear level twice
    crossings = tracker.observe(readings(values))
    assert [(c.alarm, c.reading.value) for c in crossings] == [(True, 57)]


def test_clears_only_past_the_clear_level_and_can_alarm_again() -> None:
    tracker = ThresholdTracker({"temperature": RULE})
    crossings = tracker.observe(readings([60, 60, 49, 49, 60, 61]))
    assert [c.alarm for c in crossings] == [True, False, True]


def test_single_spike_is_debounced() -> None:
    tracker = ThresholdTracker({"temperature": RULE})
    assert tracker.observe(readings([20, 90, 20, 90, 20])) == []


def test_devices_are_independent_and_unknown_metrics_ignored() -> None:
    tracker = ThresholdTracker({"temperature": RULE})
    mixed = [*readings([60], "a"), *readings([60], "b"), *readings([60], "a")]
    mixed.append(Reading("a", "humidity", T0, 99))
    crossings = tracker.observe(mixed)
    assert [c.reading.device_id for c in crossings] == ["a"]


def test_low_limit() -> None:
    rule = ThresholdSettings(
        kind="abnormal_heart_rate", priority=Priority.P2, low=40, clear_low=45, debounce=1
    )
    tracker = ThresholdTracker({"heart_rate": rule})
    values = [70, 39, 42, 44, 46]
    crossings = tracker.observe(
        [Reading("b", "heart_rate", T0 + timedelta(seconds=i), v) for i, v in enumerate(values)]
    )
    assert [(c.alarm, c.reading.value) for c in crossings] == [(True, 39), (False, 46)]


@given(st.lists(st.floats(min_value=0, max_value=100), max_size=60))
def test_alarms_and_clears_alternate(values: list[float]) -> None:
    crossings = ThresholdTracker({"temperature": RULE}).observe(readings(values))
    assert [c.alarm for c in crossings] == [i % 2 == 0 for i in range(len(crossings))]
