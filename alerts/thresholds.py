"""Thresholds on readings with hysteresis and debounce, per device and metric.

A value must stay past the limit for ``debounce`` readings in a row to alarm, and come back
past the *clear* level (not just the limit) for ``debounce`` readings to clear: a temperature
oscillating around 55 °C opens one alert, not one per crossing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from alerts.config import ThresholdSettings
from devices.models import Reading


@dataclass(frozen=True, slots=True)
class Crossing:
    reading: Reading
    rule: ThresholdSettings
    alarm: bool  # True: entered alarm; False: cleared


@dataclass(slots=True)
class _State:
    alarm: bool = False
    streak: int = 0  # consecutive readings pointing to the other state


@dataclass(slots=True)
class ThresholdTracker:
    rules: Mapping[str, ThresholdSettings]
    _states: dict[tuple[str, str], _State] = field(default_factory=dict)

    def observe(self, readings: Iterable[Reading]) -> list[Crossing]:
        crossings: list[Crossing] = []
        for reading in sorted(readings, key=lambda r: r.ts):
            rule = self.rules.get(reading.metric)
            if rule is None:
                continue
            state = self._states.setdefault((reading.device_id, reading.metric), _State())
            if state.alarm:
                flip = _cleared(rule, reading.value)
            else:
                flip = _alarming(rule, reading.value)
            state.streak = state.streak + 1 if flip else 0
            if state.streak >= rule.debounce:
                state.alarm = not state.alarm
                state.streak = 0
                crossings.append(Crossing(reading, rule, state.alarm))
        return crossings


def _alarming(rule: ThresholdSettings, value: float) -> bool:
    return (rule.high is not None and value >= rule.high) or (
        rule.low is not None and value <= rule.low
    )


def _cleared(rule: ThresholdSettings, value: float) -> bool:
    high_ok = rule.high is None or value <= (
        rule.clear_high if rule.clear_high is not None else rule.high
    )
    low_ok = rule.low is None or value >= (
        rule.clear_low if rule.clear_low is not None else rule.low
    )
    return high_ok and low_ok
