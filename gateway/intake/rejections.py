"""Counted, throttled logging of what the intake refuses."""

from __future__ import annotations

import logging
import time

from devices.codec import Rejected
from gateway.metrics import Metrics

log = logging.getLogger("gateway.intake")


class RejectionLog:
    """Counts every rejection; logs at most ``per_minute`` lines per reason, so a flooding
    device cannot flood the log too."""

    def __init__(self, metrics: Metrics, lane: str, per_minute: int = 20) -> None:
        self._metrics = metrics
        self._lane = lane
        self._per_minute = per_minute
        self._window: dict[str, tuple[float, int]] = {}

    def __call__(self, where: str, rejection: Rejected) -> None:
        reason = rejection.reason.value
        self._metrics.rejected.labels(lane=self._lane, reason=reason).inc()
        now = time.monotonic()
        start, count = self._window.get(reason, (now, 0))
        if now - start >= 60.0:
            start, count = now, 0
        count += 1
        self._window[reason] = (start, count)
        if count <= self._per_minute:
            log.warning("rejected %s on %s: %s", reason, where[:128], rejection.detail)
        elif count == self._per_minute + 1:
            log.warning("rejected %s: more this minute, counting only", reason)
