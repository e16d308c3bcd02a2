"""On-duty schedules as staff write them."""

from __future__ import annotations

from datetime import datetime

import pytest

from alerts.duty import on_duty

FRI_10 = datetime(2026, 11, 27, 10, 0)  # a Friday
SAT_10 = datetime(2026, 11, 28, 10, 0)
SAT_02 = datetime(2026, 11, 28, 2, 0)


@pytest.mark.parametrize(
    ("text", "at", "expected"),
    [
        (None, FRI_10, True),
        ("", SAT_02, True),
        ("yes", SAT_02, True),
        ("是", SAT_02, True),
        ("no", FRI_10, False),
        ("否", FRI_10, False),
        ("Mon-Fri 08:00-18:00", FRI_10, True),
        ("Mon-Fri 08:00-18:00", SAT_10, False),
        ("Sat,Sun 09:00-12:00", SAT_10, True),
        ("Fri 20:00-08:00", SAT_02, True),  # past midnight, from Friday
        ("Fri 20:00-08:00", FRI_10, False),
        ("08:00-18:00", SAT_10, True),
        ("Mon-Fri 08:00-12:00; Sat 09:00-11:00", SAT_10, True),
        ("whenever I can", FRI_10, True),  # unreadable: reached rather than skipped
    ],
)
def test_schedules(text: str | None, at: datetime, expected: bool) -> None:
    assert on_duty(text, at) is expected
