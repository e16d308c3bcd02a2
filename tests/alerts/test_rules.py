"""Event → alert decision table of SPEC."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from alerts.models import Priority
from alerts.rules import CancelAlerts, NoAlert, OpenAlert, RestoreAlerts, classify
from devices.models import Event, EventType

T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "priority"),
    [
        ("sos", Priority.P1),
        ("fall", Priority.P1),
        ("smoke", Priority.P1),
        ("gas", Priority.P1),
        ("co", Priority.P1),
        ("water_leak", Priority.P2),
        ("high_temp", Priority.P2),
        ("low_battery", Priority.P3),
        ("tamper", Priority.P3),
    ],
)
def test_priorities(kind: str, priority: Priority) -> None:
    event = Event("d", EventType(kind), T0, T0)
    assert classify(event) == OpenAlert(kind, priority)


def test_cancel_restore_and_activity() -> None:
    assert classify(Event("d", EventType.CANCEL, T0, T0)) == CancelAlerts()
    assert classify(Event("d", EventType.RESTORE, T0, T0)) == RestoreAlerts()
    for kind in ("motion", "door_open", "door_close"):
        assert classify(Event("d", EventType(kind), T0, T0)) == NoAlert()
