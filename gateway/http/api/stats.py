"""Time to acknowledge: the answer-time measures of telecare (TEC Quality, EN 50134-7 practice
reports the share of calls answered within 60 s and 180 s).

Per alert, the time from opening to its first human answer on the timeline: a responder's
accept, the desk's acknowledge, or the desk assigning it. Reading the timeline (rather than
``acked_at``) keeps the first answer even when an ack later timed out or the alert was
reassigned. Alerts cancelled before anyone answered (a resident's mistaken press) are left
out; alerts never answered count as not answered in time. Percentiles interpolate linearly
between the nearest ranks; periods are local (Asia/Shanghai) days, ISO weeks or months.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from alerts.messages import local_time
from alerts.models import AlertState, Priority
from gateway.http.api.models import ResponseGroup
from gateway.storage.base import AlertResponse

Period = Literal["all", "day", "week", "month"]


@dataclass(frozen=True, slots=True)
class Answered:
    priority: Priority
    opened_at: datetime
    seconds: float | None  # None: nobody answered


def to_samples(responses: Iterable[AlertResponse]) -> list[Answered]:
    samples = []
    for r in responses:
        if r.answered_at is None and r.state is AlertState.CANCELLED:
            continue  # withdrawn before anyone answered: not a call the desk missed
        seconds = None
        if r.answered_at is not None:
            seconds = max(0.0, (r.answered_at - r.opened_at).total_seconds())
        samples.append(Answered(r.priority, r.opened_at, seconds))
    return samples


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def period_start(at: datetime, period: Period) -> datetime | None:
    if period == "all":
        return None
    local = local_time(at).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "week":
        return local - timedelta(days=local.weekday())
    if period == "month":
        return local.replace(day=1)
    return local


def _group(
    samples: Sequence[Answered], start: datetime | None, priority: Priority | Literal["all"]
) -> ResponseGroup:
    times = [s.seconds for s in samples if s.seconds is not None]
    n = len(samples)

    def share(limit: float) -> float | None:
        return None if n == 0 else round(sum(1 for t in times if t <= limit) / n, 4)

    p50, p90 = percentile(times, 0.5), percentile(times, 0.9)
    return ResponseGroup(
        period_start=start,
        priority=priority,
        alerts=n,
        acknowledged=len(times),
        p50_s=None if p50 is None else round(p50, 3),
        p90_s=None if p90 is None else round(p90, 3),
        within_60s=share(60.0),
        within_180s=share(180.0),
    )


def summarize(samples: Sequence[Answered], period: Period) -> list[ResponseGroup]:
    """Per period (oldest first): every priority that had alerts, then all together."""
    by_period: dict[datetime | None, list[Answered]] = {}
    for s in samples:
        by_period.setdefault(period_start(s.opened_at, period), []).append(s)
    if not by_period:
        by_period[None] = []
    groups = []
    for start in sorted(by_period, key=lambda d: (d is not None, d)):
        items = by_period[start]
        for priority in Priority:
            mine = [s for s in items if s.priority is priority]
            if mine:
                groups.append(_group(mine, start, priority))
        groups.append(_group(items, start, "all"))
    return groups
