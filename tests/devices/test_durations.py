"""Durations as written in config and scenario files."""

from __future__ import annotations

import pytest

from devices.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("5m", 300), ("50ms", 0.05), ("2h", 7200), ("1d", 86400), (3, 3)],
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["soon", "-5s", True, None, "5 minutes"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
