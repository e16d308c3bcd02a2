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


class PoisonGuard:
    """Decides what happens to a message whose consumer failed on it (a bug, not a passing
    fault: the database being away is retried or spooled inside the task and never gets here).

    - First failures: the message goes back to the front of its lane and the task is restarted
      by its supervisor (with backoff) — a transient bug costs nothing.
    - After ``limit`` failures it is *skipped*: left unacked, so the broker keeps it and sends
      it again after the lane reconnects (``MqttLane.skip``), while every later message flows.
      If everything fails (a systemic fault) everything is skipped and kept: nothing is lost,
      and the crash loop shows on /readyz and in the metrics.
    - Only a message that failed ``limit`` times again after a redelivery, while other messages
      were handled fine in between, is poison for sure: it is set aside for good (acked),
      logged with its payload and counted as ``rejected{reason="poison"}``.
    """

    def __init__(self, limit: int = 3, remember: int = 10_000) -> None:
        self._limit = limit
        self._remember = remember
        self._failures: dict[tuple[str, int], tuple[int, int]] = {}  # key → (count, ok_at_skip)
        self.handled = 0  # messages handled without failure (the "others flow" evidence)

    @staticmethod
    def key(topic: str, payload: bytes) -> tuple[str, int]:
        return (topic, hash(payload))  # stable across redeliveries, unlike the packet id

    def failed(self, key: tuple[str, int]) -> str:
        """Record one failure: ``"retry"``, ``"skip"`` or ``"poison"``."""
        count, ok_at_skip = self._failures.get(key, (0, -1))
        count += 1
        if len(self._failures) >= self._remember:
            self._failures.clear()  # bounded: forgetting only costs a few extra retries
        if count < self._limit:
            self._failures[key] = (count, ok_at_skip)
            return "retry"
        if ok_at_skip < 0:
            self._failures[key] = (count, self.handled)
            return "skip"
        if count >= 2 * self._limit and self.handled > ok_at_skip:
            self._failures.pop(key, None)
            return "poison"
        self._failures[key] = (count, ok_at_skip)
        return "skip" if count % self._limit == 0 else "retry"
