"""The bulk path: readings and statuses from every source, batched into one transaction, then
acknowledged in arrival order.

Batches are at most ``max_rows`` messages or ``max_delay`` old. Before each write the path
steps aside for the event path (gateway/priority.py): a press that arrived meanwhile goes
first. Thresholds (high temperature …) run on the committed readings before the acks, so a
crash in between is repaired by the redelivery.

How a source waits for room (``Room``): a native telemetry lane waits (the broker keeps the
rest); a lane that also carries alarms (zigbee2mqtt) never waits, so the alarms behind its
readings are still read — its broker's in-flight window bounds what it can queue; a serial
line, which cannot redeliver and must keep reading its events, drops readings beyond the
bound and counts them.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from devices.codec import Rejected, RejectReason
from devices.health import HealthThrottle
from devices.models import PendingSighting, Status, Telemetry
from gateway.intake.consequences import Consequences
from gateway.intake.durable import Durable, split
from gateway.intake.parcel import Ack
from gateway.intake.poison import PoisonGuard, Verdict
from gateway.intake.rejections import RejectionLog
from gateway.metrics import Metrics
from gateway.priority import UrgentGate
from gateway.storage.base import StoreRefused

log = logging.getLogger(__name__)

LANE = "telemetry"  # the label of the path's own metrics (queue depth, batch size)


class Room(StrEnum):
    WAIT = "wait"
    ENQUEUE = "enqueue"
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class BulkItem:
    """One message for the bulk path. ``ack`` is the input's acknowledgement on the last item
    an input produced (the others carry ``NO_ACK``): it fires once all of them are durable."""

    lane: str
    message: Telemetry | Status | PendingSighting
    ack: Ack
    received_mono: float
    unchecked: bool = False  # the registry could not be asked (database away)
    poison_key: str = ""


class BulkPath:
    def __init__(
        self,
        *,
        durable: Durable,
        consequences: Consequences,
        metrics: Metrics,
        gate: UrgentGate,
        rejections: Callable[[str], RejectionLog],
        max_rows: int,
        max_delay: float,
        max_queued: int = 50_000,
    ) -> None:
        self._durable = durable
        self._consequences = consequences
        self._metrics = metrics
        self._gate = gate
        self._rejections = rejections
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._max_queued = max_queued
        self._queue: collections.deque[BulkItem] = collections.deque()
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._poison = PoisonGuard()
        self._health = HealthThrottle()
        self.busy = False  # a batch taken from the queue is being written (graceful stop)

    @property
    def depth(self) -> int:
        return len(self._queue)

    async def put(self, items: Sequence[BulkItem], room: Room = Room.WAIT) -> None:
        if room is Room.WAIT:
            while len(self._queue) >= self._max_queued:
                self._room.clear()
                await self._room.wait()
        elif room is Room.DROP and len(self._queue) >= self._max_queued:
            self._metrics.readings_dropped.labels(lane=items[0].lane).inc(len(items))
            for item in items:
                item.ack.done()  # nothing to redeliver: the source does not keep it
            return
        self._queue.extend(items)
        self._wake.set()

    def _take(self, count: int) -> list[BulkItem]:
        queue = self._queue
        batch = [queue.popleft() for _ in range(min(count, len(queue)))]
        if len(queue) < self._max_queued:
            self._room.set()
        return batch

    async def _gather(self) -> list[BulkItem]:
        """Wait for one item, then more until ``max_rows`` or ``max_delay``."""
        while not self._queue:
            self._wake.clear()
            await self._wake.wait()
        batch = self._take(self._max_rows)
        deadline = time.monotonic() + self._max_delay
        while len(batch) < self._max_rows:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if not self._queue:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            batch += self._take(self._max_rows - len(batch))
        return batch

    async def run(self) -> None:
        while True:
            batch = await self._gather()
            self._metrics.queue_depth.labels(lane=LANE).set(len(self._queue))
            self.busy = True
            try:
                await self.write(batch)
            except StoreRefused:
                # The database refused some content: write one at a time, so only what it
                # refuses is set aside (bad input, not a fault: no restart, no retry).
                await self._one_by_one(batch)
            except asyncio.CancelledError:
                self._queue.extendleft(reversed(batch))  # shutdown: still unacknowledged
                raise
            except Exception as exc:
                # A bug mid-batch (see gateway/intake/poison.py): the batch goes back to the
                # front for the restarted task; a batch that keeps failing is taken apart so
                # that only what fails is held back.
                if self._poison.failed(batch[0].poison_key or repr(batch[0])) is Verdict.RETRY:
                    self._queue.extendleft(reversed(batch))
                    raise
                log.error("bulk batch failed repeatedly (%s); one message at a time", exc)
                await self._one_by_one(batch)
            else:
                self._poison.handled += len(batch)
            finally:
                self.busy = False

    async def _one_by_one(self, batch: list[BulkItem]) -> None:
        kept = 0
        for item in batch:
            try:
                await self.write([item])
            except StoreRefused as exc:
                source = item.poison_key or item.lane
                await self._durable.set_aside(item.lane, source, str(exc), repr(item.message))
                self._rejections(item.lane)(source, Rejected(RejectReason.UNSTORABLE, str(exc)))
                item.ack.done()
            except Exception:  # logged with its traceback and counted: see PoisonGuard
                verdict = self._poison.failed(item.poison_key or repr(item.message))
                if verdict is Verdict.POISON:
                    log.exception("set aside poison message from %s: %r", item.lane, item.message)
                    await self._durable.set_aside(
                        item.lane,
                        item.poison_key or item.lane,
                        "poison: writing kept failing",
                        repr(item.message),
                    )
                    self._rejections(item.lane)(
                        item.lane, Rejected(RejectReason.POISON, "handler failed")
                    )
                    item.ack.done()
                else:
                    if not kept:  # one traceback per batch: a systemic fault fails them all
                        log.exception(
                            "writing failed on a %s message; left for a redelivery", item.lane
                        )
                    kept += 1
                    item.ack.later()
            else:
                self._poison.handled += 1
        if kept > 1:
            log.error("%d of %d messages left for a redelivery", kept, len(batch))

    async def write(self, batch: list[BulkItem]) -> None:
        messages: list[Telemetry | Status] = []
        unchecked: list[Telemetry | Status] = []
        pending: list[PendingSighting] = []
        kinds = {"telemetry": 0, "status": 0}
        for item in batch:
            message = item.message
            if type(message) is PendingSighting:
                pending.append(message)
                continue
            assert isinstance(message, Telemetry | Status)
            if item.unchecked:
                unchecked.append(message)
                continue
            messages.append(message)
            kinds["telemetry" if type(message) is Telemetry else "status"] += 1
        await self._gate.step_aside()  # a press that arrived meanwhile goes first
        readings, health = split(messages)
        due = self._health.select(health)
        if readings or due or unchecked:
            lane = batch[0].lane
            # Committed (thresholds checked after), or spooled while the database is away;
            # waits, unacked, while the spool is full.
            result = await self._durable.readings(
                lane,
                readings,
                due,
                unchecked=unchecked,
                after=self._consequences.readings_stored,
            )
            self._health.written(due)
            if result is not None:
                self._metrics.readings_stored.inc(result.readings_new)
                if result.readings_duplicate:
                    self._metrics.duplicates.labels(kind="reading").inc(result.readings_duplicate)
        if pending:
            await self._durable.pending(batch[0].lane, pending)
            self._metrics.pending.inc(len(pending))
        for kind, count in kinds.items():
            if count:
                self._metrics.stored.labels(kind=kind).inc(count)
        self._metrics.batch_size.observe(len(batch))
        now = time.monotonic()
        for item in batch:  # in arrival order, all after the commit
            item.ack.done()
            self._metrics.ack_lag.labels(lane=item.lane).observe(now - item.received_mono)
