"""Per-device token buckets: which devices flood.

A device over its rate is *flagged* for technicians (the devices API and the dashboard show
it; ``scgw_devices_rate_limited`` counts such devices, without a device label) until nothing
of it has been over the rate for ``clear_after`` seconds. Whether its messages are kept is
the caller's choice (SPEC: kept by default; discarding is opt-in).

A flood is judged by the device's own timestamps where it sends them (``allow(…, at=)``):
a backlog the broker held through a restart or an outage, or one a device uploads after its
link returns, arrives all at once but was produced at a normal pace — that is not a flood.
Without a device timestamp, arrival time is all there is.

Flags are kept in memory for the hot path and handed to the database (``take_changes``) so
that every instance, and this one after a restart, shows the same flags.
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
    changed: bool = True  # not yet handed over by ``take_changes``


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
        # device → (tokens, arrival time of the last message, device time of it or None)
        self._buckets: OrderedDict[str, tuple[float, float, float | None]] = OrderedDict()
        self._flags: dict[str, _Episode] = {}
        self._metrics = metrics
        if metrics is not None:
            # Computed at scrape time, so a flag that cleared by itself is not counted.
            metrics.devices_rate_limited.set_function(lambda: float(self.flagged_count()))

    def allow(self, device_id: str, at: float | None = None) -> bool:
        """One message of ``device_id``; ``at``: the device's own time of it (epoch seconds)
        when it sent one. False when the device is over its rate (it is flagged)."""
        now = self._clock()
        tokens, last, last_at = self._buckets.get(device_id, (self._burst, now, None))
        if at is not None and last_at is not None:
            elapsed = max(0.0, at - last_at)  # by the device's clock: a backlog is no flood
        else:
            elapsed = now - last
        tokens = min(self._burst, tokens + elapsed * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self._refused(device_id, now)
        self._buckets[device_id] = (tokens, now, at if at is not None else last_at)
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
        episode.changed = True

    def _make_room(self, now: float) -> None:
        self._expire(now)
        while len(self._flags) >= self.MAX_FLAGS:
            del self._flags[next(iter(self._flags))]

    def _expire(self, now: float) -> None:
        quiet = [d for d, e in self._flags.items() if now - e.last_mono >= self._clear_after]
        for device_id in quiet:
            del self._flags[device_id]

    def take_changes(self) -> list[tuple[str, Flag]]:
        """Flags that changed since the last call (for the database)."""
        now = self._clock()
        out = []
        for device_id, episode in self._flags.items():
            if episode.changed:
                episode.changed = False
                out.append((device_id, self._snapshot(episode, now)))
        return out

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
