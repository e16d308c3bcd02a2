"""Is a responder on duty now? ``on_duty`` as staff write it in the spreadsheet.

Accepted: empty / ``yes`` / ``always`` / ``是`` (always), ``no`` / ``否`` (never), or windows
like ``Mon-Fri 08:00-18:00`` and ``Sat,Sun 09:00-12:00; Mon 20:00-08:00`` (a window that ends
before it starts runs past midnight). Anything unreadable counts as on duty: in an emergency a
wrongly reached volunteer is better than a silently skipped one.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, time
from functools import lru_cache

log = logging.getLogger(__name__)

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALWAYS = {"", "yes", "y", "true", "1", "always", "是", "在岗", "24h"}
_NEVER = {"no", "n", "false", "0", "never", "否", "不在岗"}
_WINDOW = re.compile(r"^\s*([A-Za-z,\-\s]+?)?\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")

Window = tuple[frozenset[int], time, time]


def _days(text: str | None) -> frozenset[int]:
    if not text:
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if "-" in part:
            first, last = part.split("-", 1)
            a, b = _DAYS.index(first[:3]), _DAYS.index(last[:3])
            days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
        elif part:
            days.add(_DAYS.index(part[:3]))
    return frozenset(days)


@lru_cache(maxsize=1024)
def parse_schedule(text: str | None) -> tuple[Window, ...] | bool:
    """True (always), False (never) or the windows."""
    value = (text or "").strip()
    if value.lower() in _ALWAYS:
        return True
    if value.lower() in _NEVER:
        return False
    windows: list[Window] = []
    for chunk in re.split(r"[;；]", value):
        if not chunk.strip():
            continue
        match = _WINDOW.match(chunk)
        if match is None:
            log.warning("unreadable on_duty %r: treated as always on duty", text)
            return True
        try:
            days = _days(match.group(1))
        except ValueError:
            log.warning("unreadable days in on_duty %r: treated as always on duty", text)
            return True
        start = time(int(match.group(2)) % 24, int(match.group(3)) % 60)
        end = time(int(match.group(4)) % 24, int(match.group(5)) % 60)
        windows.append((days, start, end))
    return tuple(windows) if windows else True


def on_duty(text: str | None, at: datetime) -> bool:
    """``at`` in the station's local time."""
    schedule = parse_schedule(text)
    if isinstance(schedule, bool):
        return schedule
    now = at.time()
    day = at.weekday()
    for days, start, end in schedule:
        if start <= end:
            if day in days and start <= now < end:
                return True
        elif (day in days and now >= start) or ((day - 1) % 7 in days and now < end):
            return True
    return False
