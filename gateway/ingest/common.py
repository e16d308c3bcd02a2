"""Pieces both ingest lanes share: the durable-write retry and throttled rejection logging."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from devices.codec import Rejected
from gateway.metrics import Metrics
from gateway.storage.base import StoreError

log = logging.getLogger("gateway.ingest")
T = TypeVar("T")

RETRY_FIRST = 0.05
RETRY_MAX = 5.0


async def write_durably(metrics: Metrics, lane: str, write: Callable[[], Awaitable[T]]) -> T:
    """Retry a write until the database takes it. Nothing is acked meanwhile, so the broker
    keeps the messages; a crash here loses nothing."""
    delay = RETRY_FIRST
    while True:
        try:
            return await write()
        except StoreError as exc:
            metrics.store_errors.labels(lane=lane).inc()
            log.warning("%s lane: store unavailable (%s); retrying in %.2fs", lane, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


class RejectionLog:
    """Counts every rejection; logs at most ``per_minute`` lines per reason, so a flooding
    device cannot flood the log too."""

    def __init__(self, metrics: Metrics, lane: str, per_minute: int = 20) -> None:
        self._metrics = metrics
        self._lane = lane
        self._per_minute = per_minute
        self._window: dict[str, tuple[float, int]] = {}

    def __call__(self, topic: str, rejection: Rejected) -> None:
        reason = rejection.reason.value
        self._metrics.rejected.labels(lane=self._lane, reason=reason).inc()
        now = time.monotonic()
        start, count = self._window.get(reason, (now, 0))
        if now - start >= 60.0:
            start, count = now, 0
        count += 1
        self._window[reason] = (start, count)
        if count <= self._per_minute:
            log.warning("rejected %s on %s: %s", reason, topic[:128], rejection.detail)
        elif count == self._per_minute + 1:
            log.warning("rejected %s: more this minute, counting only", reason)
