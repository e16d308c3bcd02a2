"""Per-device token buckets: a flooding device is cut off without slowing anyone else."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class DeviceRateLimiter:
    MAX_DEVICES = 200_000

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.flagged: set[str] = set()

    def allow(self, device_id: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(device_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        else:
            self.flagged.add(device_id)
        self._buckets[device_id] = (tokens, now)
        self._buckets.move_to_end(device_id)
        if len(self._buckets) > self.MAX_DEVICES:
            self._buckets.popitem(last=False)
        return allowed
