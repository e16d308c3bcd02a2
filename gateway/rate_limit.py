"""Per-device token buckets: a flooding device is cut off without slowing anyone else.

A device refused once is *flagged* for technicians (the devices API and the dashboard show
it; ``scgw_devices_rate_limited`` counts such devices, without a device label) until nothing
of it has been refused for ``clear_after`` seconds. Flags live in this process's memory: a
restart forgets them, and with several gateway instances each shows the devices it cut off.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from gateway.metrics import Metrics

DEFAULT_CLEAR_AFTER: Final = 600.0


@dataclass(frozen=True, slots=True)
class Flag:
    """A device that went over its limit, as technicians see it."""

    since: datetime  # the first refusal since the device was last quiet
    last_rejected: datetime
    rejected: int  # messages refused since ``since``


@dataclass(slots=True)
class _Episode:
    since: datetime
    since_mono: float
    last_mono: float
    rejected: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DeviceRateLimiter:
    MAX_DEVICES = 200_000
    # Flags kept at most; past it the quiet ones go first, then the oldest (a botnet of ids
    # must not grow memory without end).
    MAX_FLAGS = 10_000

    def __init__(
        self,
        *,
        rate: float,
        burst: int,
        clear_after: float = DEFAULT_CLEAR_AFTER,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = _utc_now,
        metrics: Metrics | None = None,
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clear_after = clear_after
        self._clock = clock
        self._wall = wall
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._flags: dict[str, _Episode] = {}
        self._metrics = metrics
        if metrics is not None:
            # Computed at scrape time, so a flag that cleared by itself is not counted.
            metrics.devices_rate_limited.set_function(lambda: float(self.flagged_count()))

    def allow(self, device_id: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self._refused(device_id, now)
        self._buckets[device_id] = (tokens, now)
        self._buckets.move_to_end(device_id)
        if len(self._buckets) > self.MAX_DEVICES:
            self._buckets.popitem(last=False)
        return allowed

    def _refused(self, device_id: str, now: float) -> None:
        episode = self._flags.get(device_id)
        if episode is None or now - episode.last_mono >= self._clear_after:
            if len(self._flags) >= self.MAX_FLAGS:
                self._make_room(now)
            self._flags[device_id] = _Episode(self._wall(), now, now, 1)
            if self._metrics is not None:
                self._metrics.rate_limit_flags.inc()
            return
        episode.last_mono = now
        episode.rejected += 1

    def _make_room(self, now: float) -> None:
        self._expire(now)
        while len(self._flags) >= self.MAX_FLAGS:
            del self._flags[next(iter(self._flags))]

    def _expire(self, now: float) -> None:
        quiet = [d for d, e in self._flags.items() if now - e.last_mono >= self._clear_after]
        for device_id in quiet:
            del self._flags[device_id]

    # -- what technicians see -------------------------------------------------------------------
    def flag(self, device_id: str) -> Flag | None:
        """The device's flag, or None when it is within its limit (or quiet again)."""
        episode = self._flags.get(device_id)
        if episode is None:
            return None
        now = self._clock()
        if now - episode.last_mono >= self._clear_after:
            del self._flags[device_id]
            return None
        return self._snapshot(episode, now)

    def flags(self) -> dict[str, Flag]:
        """Every device flagged now."""
        now = self._clock()
        self._expire(now)
        return {d: self._snapshot(e, now) for d, e in self._flags.items()}

    def flagged_count(self) -> int:
        self._expire(self._clock())
        return len(self._flags)

    @property
    def flagged(self) -> set[str]:
        return set(self.flags())

    def _snapshot(self, episode: _Episode, now: float) -> Flag:
        # Wall time from the monotonic clock; never before ``since`` (the two clocks drift).
        last = max(episode.since, self._wall() - timedelta(seconds=now - episode.last_mono))
        return Flag(since=episode.since, last_rejected=last, rejected=episode.rejected)
