"""Store → bus for the sources beyond the native MQTT lanes (serial, SIA DC-09, zigbee2mqtt).

Each source decodes itself; this is the part they share: the address lookup (``resolve``,
which keeps answering from memory while the database is away), the durable write (the
database, or the spool while it is away — the caller acks its source only afterwards), then
``EventBus.deliver`` for events (new and duplicate alike, see ``gateway.ingest.bus``), the
counters, and a small batch writer for readings from sources without redelivery.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from devices.codec import Rejected
from devices.codecs import Decoded, DeviceAddress
from devices.health import health_of, merge
from devices.index import AddressIndex
from devices.models import DeviceHealth, Event, PendingSighting, Reading, Status, Telemetry
from devices.registry import RegistryCache
from gateway.ingest.bus import EventBus
from gateway.ingest.common import RejectionLog, write_durably
from gateway.metrics import Metrics
from gateway.spool.durable import Durability, Unavailable
from gateway.spool.spool import SpoolState
from gateway.storage.base import Store, StoreError

log = logging.getLogger(__name__)

ReadingsHook = Callable[[Sequence[Reading]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Unchecked:
    """An address not in memory while the registry cannot be read (database away)."""


UNCHECKED: Final = Unchecked()


class DeviceSink:
    """Where one source's decoded, device-bound messages go. ``lane`` labels the metrics."""

    def __init__(
        self,
        *,
        store: Store,
        bus: EventBus,
        metrics: Metrics,
        lane: str,
        on_readings: ReadingsHook | None = None,
        durable: Durability | None = None,
    ) -> None:
        self._store = store
        self._bus = bus
        self._metrics = metrics
        self.lane = lane
        self._on_readings = on_readings
        self.reject = RejectionLog(metrics, lane)
        # The gateway's Durability spools while the database is away; without one, writes
        # wait for the database as before.
        self._durable = durable or Durability(
            store=store,
            spool=None,
            bus=bus,
            registry=RegistryCache(store),
            metrics=metrics,
            on_readings=on_readings,
        )

    async def resolve(self, index: AddressIndex, where: DeviceAddress) -> str | Unchecked | None:
        """The device registered at ``where``; None when nobody registered it; ``UNCHECKED``
        when the database is away and the address is not in memory (hand the messages to
        ``unchecked``). A known address keeps resolving from memory during an outage.
        Without a spool a needed registry read waits for the database, as before."""
        if not index.needs_load(where):
            found = index.cached(where)
            return found if found is not None or index.current else UNCHECKED
        durable = self._durable
        if durable.spool is None:
            await write_durably(self._metrics, self.lane, index.load)
            return index.cached(where)
        try:
            await durable.attempt(self.lane, index.load)
        except Unavailable as exc:
            index.load_failed()  # the next try after ``recheck``, not on every message
            log.warning("%s: registry not readable (%s); using what is known", self.lane, exc)
            found = index.cached(where)
            return found if found is not None else UNCHECKED
        return index.cached(where)

    async def unchecked(self, decoded: Decoded, *, wait_for_room: bool = True) -> None:
        """Spool the messages of an address that could not be looked up, under its provisional
        id: the drain stores them for the device registered there, or keeps them pending.
        Durable when this returns (the source may ack). ``wait_for_room=False`` (a serial
        line, which cannot redeliver and must keep reading): readings a full spool would
        refuse are dropped and counted instead of waiting; events are always kept."""
        messages: list[Telemetry | Status] = []
        for message in decoded.messages:
            if isinstance(message, Event):
                await self._durable.event(self.lane, message, checked=False)
            else:
                messages.append(message)
        if not messages:
            return
        spool = self._durable.spool
        if not wait_for_room and spool is not None and spool.state is SpoolState.FULL:
            self._metrics.readings_dropped.labels(lane=self.lane).inc(len(messages))
            return
        await self._durable.readings(self.lane, (), (), messages)

    async def event(self, event: Event) -> bool:
        """Store one event, then hand it to the bus (or spool it while the database is away:
        durable either way when this returns). True when it was stored new."""
        result = await self._durable.event(self.lane, event)
        if result.spooled:
            return False
        new = result.new
        if not new:
            self._metrics.duplicates.labels(kind="event").inc()
            return False
        self._metrics.stored.labels(kind="event").inc()
        try:
            await self._store.record_health([health_of(event)])
        except StoreError as exc:  # refreshed by the next message; the event itself is safe
            log.warning("device health of %s not updated: %s", event.device_id, exc)
        return True

    async def readings(self, messages: Sequence[Telemetry | Status]) -> None:
        """Readings and device health of several messages in one transaction."""
        readings: list[Reading] = []
        health: dict[str, DeviceHealth] = {}
        kinds = {"telemetry": 0, "status": 0}
        for message in messages:
            if isinstance(message, Telemetry):
                readings.extend(message.readings)
                kinds["telemetry"] += 1
            else:
                kinds["status"] += 1
            seen = health_of(message)
            before = health.get(seen.device_id)
            health[seen.device_id] = seen if before is None else merge(before, seen)
        if not readings and not health:
            return
        # Thresholds (high temperature, ...) apply whatever the source: Durability checks them
        # after the commit, like the native telemetry lane; the database away, it spools.
        result = await self._durable.readings(self.lane, readings, list(health.values()))
        if result is not None:
            self._metrics.readings_stored.inc(result.readings_new)
            if result.readings_duplicate:
                self._metrics.duplicates.labels(kind="reading").inc(result.readings_duplicate)
        for kind, count in kinds.items():
            if count:
                self._metrics.stored.labels(kind=kind).inc(count)

    async def pending(self, sightings: Sequence[PendingSighting]) -> None:
        """Keep messages of unregistered devices aside for adoption."""
        if not sightings:
            return
        await self._durable.pending(self.lane, sightings)
        self._metrics.pending.inc(len(sightings))

    def problem(self, where: str, rejection: Rejected) -> None:
        """A part of an input that was ignored while the rest was used: counted and logged."""
        self.reject(where, rejection)


class BatchWriter:
    """Collects readings from a source that cannot redeliver (a serial line) and writes them
    in small batches, so a busy bus does not cost one transaction per frame.

    Bounded: while the database is away the oldest readings are dropped (and counted) rather
    than memory growing without end. Events never pass through here.
    """

    def __init__(
        self,
        sink: DeviceSink,
        metrics: Metrics,
        *,
        max_rows: int = 500,
        max_delay: float = 0.05,
        max_queued: int = 20_000,
    ) -> None:
        self._sink = sink
        self._metrics = metrics
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._queue: collections.deque[Telemetry | Status] = collections.deque()
        self._max_queued = max_queued
        self._wake = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self._queue)

    def put(self, messages: Sequence[Telemetry | Status]) -> None:
        self._queue.extend(messages)
        overflow = len(self._queue) - self._max_queued
        if overflow > 0:
            for _ in range(overflow):
                self._queue.popleft()
            self._metrics.readings_dropped.labels(lane=self._sink.lane).inc(overflow)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(self._max_delay)  # let a burst gather into one transaction
            while self._queue:
                count = min(self._max_rows, len(self._queue))
                batch = [self._queue.popleft() for _ in range(count)]
                await self._sink.readings(batch)
