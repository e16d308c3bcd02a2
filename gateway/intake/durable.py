"""The one durable step of the intake: the database, or — while it is away — the spool.

It returns what happened (stored new, a duplicate, spooled) and knows nothing of alerts; the
paths act on the result (``gateway.intake.consequences``).

A write is tried ``attempts`` times within a short ``write_timeout`` each (a blip does not
spool); when it still fails the record is appended to the spool (fsynced) and the caller may
ack its source. Once anything is spooled, later writes queue behind it in the spool until the
drain has replayed everything, so the database receives records in the order they came.

Events are always spooled (only a failing disk refuses them; then the source is not acked and
the write is retried, as without a spool). Readings and pending sightings are refused by a
full spool: the call then waits, unacked (the broker keeps the messages), until there is room.

The drain (``run_drain``, supervised in the gateway's TaskGroup) waits until the database
answers, then replays the oldest segment record by record into the store and the
consequences (the alert engine, with any outage notice), and deletes a segment once all of it
is applied. Replays are idempotent: events carry a dedup key (one is given to events that had
none), readings dedup on (device, metric, ts), the engine on the event's trigger key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import os
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import orjson

from alerts.outage import OutageNotice
from alerts.replies import Reply
from devices.codecs import rebind
from devices.health import health_of, merge
from devices.models import DeviceHealth, Event, PendingSighting, Reading, Status, Telemetry
from gateway.intake.consequences import Consequences
from gateway.metrics import Metrics
from gateway.registry import LiveRegistry
from gateway.spool import records as rec
from gateway.spool.spool import Spool
from gateway.storage.base import BatchResult, Store, StoreError

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_FIRST = 0.05
RETRY_MAX = 5.0
FULL_RETRY = 0.5  # how often a refused readings batch looks for room again
DISK_RETRY_MAX = 5.0
DRAIN_RETRY_FIRST = 0.2
DRAIN_RETRY_MAX = 5.0


class Unavailable(Exception):
    """The database did not take the write within the short retry."""


@dataclasses.dataclass(frozen=True, slots=True)
class EventResult:
    new: bool  # stored now for the first time (False: a duplicate, or spooled)
    spooled: bool


async def write_durably(metrics: Metrics, lane: str, write: Callable[[], Awaitable[T]]) -> T:
    """Retry a write until the database takes it (no spool configured). Nothing is acked
    meanwhile, so the source keeps the input; a crash here loses nothing."""
    delay = RETRY_FIRST
    while True:
        try:
            return await write()
        except StoreError as exc:
            metrics.store_errors.labels(lane=lane).inc()
            log.warning("%s lane: store unavailable (%s); retrying in %.2fs", lane, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)


class Durable:
    def __init__(
        self,
        *,
        store: Store,
        spool: Spool | None,
        registry: LiveRegistry,
        metrics: Metrics,
        consequences: Consequences | None = None,
        attempts: int = 2,
        retry_delay: float = 0.1,
        write_timeout: float = 2.0,
    ) -> None:
        self.store = store
        self.spool = spool
        self.registry = registry
        self.metrics = metrics
        # What the drain tells after a replay; the gateway sets it once the alert side exists.
        self.consequences = consequences
        self.attempts = attempts
        self.retry_delay = retry_delay
        self.write_timeout = write_timeout
        # Spooled events whose outage notification is going out: set once the event record
        # is on disk (the notice record must follow it).
        self._event_durable: dict[str, asyncio.Event] = {}

    @property
    def spooling(self) -> bool:
        """Writes go to the spool now (the database was away and the spool is not drained)."""
        return self.spool is not None and self.spool.active

    # -- trying the database ------------------------------------------------------------------
    async def attempt(self, lane: str, write: Callable[[], Awaitable[T]]) -> T:
        """``write`` within the short retry, or ``Unavailable``. A write that hangs past
        ``write_timeout`` counts as failed (a stopped server makes the pool wait far longer);
        if it did commit after all, the spooled copy is a duplicate the store absorbs.
        Without a spool it waits for the database instead (nothing to fall back on)."""
        if self.spool is None:
            return await write_durably(self.metrics, lane, write)
        for attempt in range(1, self.attempts + 1):
            try:
                async with asyncio.timeout(self.write_timeout):
                    return await write()
            except StoreError as exc:
                self.metrics.store_errors.labels(lane=lane).inc()
                log.debug("%s lane: store unavailable (%s), try %d", lane, exc, attempt)
            except TimeoutError:
                self.metrics.store_errors.labels(lane=lane).inc()
                raise Unavailable(f"no answer in {self.write_timeout:g}s") from None
            if attempt < self.attempts:
                await asyncio.sleep(self.retry_delay)
        raise Unavailable("database unavailable")

    # -- the writes the paths make ------------------------------------------------------------
    async def event(
        self,
        lane: str,
        event: Event,
        *,
        checked: bool = True,
        on_spooling: Callable[[Event], bool] | None = None,
    ) -> EventResult:
        """Store ``event``, or spool it. Durable when this returns. ``checked=False``: the
        registry could not be asked (database away): always spooled, the drain decides.
        ``on_spooling(event)`` runs just before the spool append; True means an outage
        notice will follow it (``record_notice``), which must land after the event."""
        spool = self.spool
        if spool is None:
            new = await write_durably(self.metrics, lane, lambda: self.store.store_event(event))
            return EventResult(new, spooled=False)
        if checked and not spool.active:
            try:
                new = await self.attempt(lane, lambda: self.store.store_event(event))
                return EventResult(new, spooled=False)
            except Unavailable as exc:
                log.warning("%s lane: %s; spooling event of %s", lane, exc, event.device_id)
        keyed = with_dedup_key(event)
        key = keyed.dedup_key
        assert key is not None
        durable = asyncio.Event()
        # Called before the append so that the drain, replaying this event, always finds the
        # notification (in flight or done); its notice record waits for ``durable`` so that
        # it lands after the event in the spool.
        if checked and on_spooling is not None and on_spooling(keyed):
            self._event_durable[key] = durable
        await self._append(lane, rec.SpooledEvent(keyed, checked), kind="event")
        durable.set()
        return EventResult(new=False, spooled=True)

    async def readings(
        self,
        lane: str,
        readings: Sequence[Reading],
        health: Sequence[DeviceHealth] = (),
        *,
        unchecked: Sequence[Telemetry | Status] = (),
        after: Callable[[Sequence[Reading]], Awaitable[None]] | None = None,
    ) -> BatchResult | None:
        """Store readings and device health in one transaction, then run ``after`` on the
        readings (thresholds) — or spool them all (None; the drain runs ``after`` then).
        ``unchecked``: messages of devices the registry could not be asked about (database
        away), spooled for the drain to sort out. While the spool is full this waits, unacked
        (the broker keeps the messages), trying the database again whenever the spool is
        empty."""

        async def write() -> BatchResult:
            result = await self.store.store_batch(readings, health)
            # ``after`` failing with the database retries both: the store absorbs the
            # repeated readings, and a spooled copy runs ``after`` at replay.
            if after is not None and readings:
                await after(readings)
            return result

        spool = self.spool
        if spool is None:
            if unchecked:
                raise ValueError("unchecked messages need a spool")
            return await write_durably(self.metrics, lane, write)
        record = rec.SpooledReadings(tuple(readings), tuple(health), tuple(unchecked))
        while True:
            if not spool.active and not unchecked:
                try:
                    stored = await self.attempt(lane, write)
                    spool.relieved()
                    return stored
                except Unavailable as exc:
                    log.warning("%s lane: %s; spooling %d readings", lane, exc, len(readings))
            if await self._try_append(lane, record, kind="readings"):
                return None
            await asyncio.sleep(FULL_RETRY)

    async def pending(self, lane: str, sightings: Sequence[PendingSighting]) -> None:
        if not sightings:
            return
        spool = self.spool
        if spool is None:
            await write_durably(self.metrics, lane, lambda: self.store.record_pending(sightings))
            return
        record = rec.SpooledPending(tuple(sightings))
        while True:
            if not spool.active:
                try:
                    await self.attempt(lane, lambda: self.store.record_pending(sightings))
                    spool.relieved()
                    return
                except Unavailable:
                    pass
            if await self._try_append(lane, record, kind="pending"):
                return
            await asyncio.sleep(FULL_RETRY)

    async def health(self, lane: str, health: Sequence[DeviceHealth]) -> None:
        """Best effort: a device's health is refreshed by its next message, so a write that
        fails (or would have to wait for a database that is away) is skipped, not spooled."""
        if not health or self.spooling:
            return
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.store.record_health(health)
        except (StoreError, TimeoutError) as exc:
            log.warning("device health not updated (%s): %s", lane, exc or "timeout")

    async def reply(self, lane: str, reply: Reply, act: Callable[[Reply], Awaitable[None]]) -> None:
        """A responder's reply: acted on now, or spooled and replayed after the outage (a
        reply to an outage notice names the alert id the alert gets when it is created)."""
        if self.spool is None:
            await write_durably(self.metrics, lane, lambda: act(reply))
            return
        if not self.spool.active:
            try:
                await self.attempt(lane, lambda: act(reply))
                return
            except Unavailable:
                pass
        await self._append(lane, rec.SpooledReply(reply), kind="reply")

    async def set_aside(self, lane: str, source: str, reason: str, content: str) -> None:
        """Keep an input that will not be stored (the database refused its content, or the
        gateway kept failing on it) where people can see it — the database's ``set_aside``
        table, or with the database away a file beside the spool — so acknowledging it loses
        nothing silently and it is never retried forever."""
        at = datetime.now(UTC)
        log.error("%s: set aside input from %s (%s)", lane, source, reason)
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.store.set_aside(at, lane, source, reason, content)
            return
        except (StoreError, TimeoutError) as exc:
            log.warning("set-aside record not in the database (%s); keeping it on disk", exc)
        if self.spool is None:
            log.error("set-aside input from %s: %r", source, content[:2000])
            return
        line = orjson.dumps(
            {
                "at": at.isoformat(),
                "lane": lane,
                "source": source,
                "reason": reason,
                "content": content,
            }
        )
        await asyncio.to_thread(_append_line, self.spool.directory / "set-aside.jsonl", line)

    async def record_notice(self, notice: OutageNotice) -> None:
        """Keep what the outage dispatcher sent, after the event it belongs to."""
        durable = self._event_durable.pop(notice.event_key, None)
        if durable is not None:
            await durable.wait()
        if self.spool is not None:
            await self._append("outage", rec.SpooledNotice(notice), kind="notice")

    async def _append(self, lane: str, record: rec.Record, *, kind: str) -> None:
        """Append a record the spool never refuses for space (events and what belongs to
        them)."""
        appended = await self._try_append(lane, record, kind=kind)
        assert appended, "events are never refused for space"

    async def _try_append(self, lane: str, record: rec.Record, *, kind: str) -> bool:
        """Append; False when the spool is full (readings, pending). Retried while the disk
        fails — the caller's source stays unacked meanwhile, so nothing is lost."""
        spool = self.spool
        assert spool is not None
        delay = FULL_RETRY
        while True:
            try:
                if await spool.append(record):
                    self.metrics.spooled.labels(kind=kind).inc()
                    return True
                self.metrics.spool_refused.labels(kind=kind).inc()
                return False
            except OSError as exc:
                self.metrics.spool_errors.inc()
                log.error(
                    "%s lane: cannot write the spool (%s); retrying in %.1fs", lane, exc, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, DISK_RETRY_MAX)

    # -- the drain ----------------------------------------------------------------------------
    async def run_drain(self) -> None:
        """Replay the spool into the database whenever it holds records and the database
        answers. Runs for the gateway's lifetime."""
        spool = self.spool
        if spool is None:
            await asyncio.Event().wait()  # nothing to do, ever
            return
        delay = DRAIN_RETRY_FIRST
        while True:
            await spool.nonempty.wait()
            try:
                await self.store.ping()
                await self.drain_once()
                delay = DRAIN_RETRY_FIRST
            except StoreError as exc:
                log.info("spool drain waits for the database: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, DRAIN_RETRY_MAX)

    async def drain_once(self) -> int:
        """Replay segments until the spool is empty; returns the records applied. Raises
        StoreError when the database goes away again (the drain resumes at that record)."""
        spool = self.spool
        assert spool is not None
        applied = 0
        while (item := await spool.next_segment()) is not None:
            segment, bodies = item
            for body in bodies[spool.applied_in_oldest :]:
                await self._apply(body, segment.path)
                spool.applied()
                applied += 1
            await spool.remove(segment)
        return applied

    async def _apply(self, body: bytes, where: Path) -> None:
        try:
            record = rec.loads(body)
        except rec.SpoolFormatError as exc:
            self._set_aside(body, where, str(exc))
            return
        try:
            kind = await self._replay(record)
        except StoreError:
            raise
        except Exception as exc:  # logged with traceback, counted, and the record kept
            # One record the store refuses for its content (a bug, not an outage) must not
            # wedge the drain and with it all ingest: it is set aside on disk, loudly.
            log.exception("spool record from %s could not be replayed", where)
            self._set_aside(body, where, f"{type(exc).__name__}: {exc}")
            return
        self.metrics.drained.labels(kind=kind).inc()

    async def _replay(self, record: rec.Record) -> str:
        consequences = self.consequences
        if isinstance(record, rec.SpooledEvent):
            await self._replay_event(record)
            return "event"
        if isinstance(record, rec.SpooledReadings):
            result = await self._replay_readings(record)
            if result is not None:
                self.metrics.readings_stored.inc(result.readings_new)
            return "readings"
        if isinstance(record, rec.SpooledPending):
            await self.store.record_pending(record.sightings)
            return "pending"
        if isinstance(record, rec.SpooledReply):
            if consequences is not None:
                await consequences.reply(record.reply)
            return "reply"
        # A notice was applied with its event (the outage dispatcher keeps it in memory, and
        # loads it from the spool after a restart); once its own record is drained it is done.
        if consequences is not None:
            consequences.notice_drained(record.notice)
        return "notice"

    async def _registered_as(self, device_id: str) -> str | None:
        """The registered device an unchecked message belongs to, or None (pending)."""
        if not await self.registry.check():
            raise StoreError("the registry cannot be read")
        return self.registry.registered_as(device_id)

    async def _replay_event(self, record: rec.SpooledEvent) -> None:
        event = record.event
        if not record.checked:
            registered = await self._registered_as(event.device_id)
            if registered is None:
                sighting = PendingSighting(
                    event.device_id, event.ts, "event", event.payload, event.type
                )
                await self.store.record_pending([sighting])
                return
            if registered != event.device_id:
                bound = rebind(event, registered)
                assert isinstance(bound, Event)
                event = bound
        new = await self.store.store_event(event)
        if self.consequences is not None:
            await self.consequences.event_replayed(event, duplicate=not new)
        if new:
            self.metrics.stored.labels(kind="event").inc()
            try:
                await self.store.record_health([health_of(event)])
            except StoreError as exc:  # refreshed by the next message; the event is safe
                log.warning("device health of %s not updated: %s", event.device_id, exc)

    async def _replay_readings(self, record: rec.SpooledReadings) -> BatchResult | None:
        """Readings and health in one transaction, messages of devices not checked yet
        sorted into stored or pending, then the thresholds."""
        readings = list(record.readings)
        health = {h.device_id: h for h in record.health}
        pending: list[PendingSighting] = []
        for message in record.unchecked:
            registered = await self._registered_as(message.device_id)
            if registered is None:
                pending.append(PendingSighting(message.device_id, message.ts, _kind(message), "{}"))
                continue
            if registered != message.device_id:
                bound = rebind(message, registered)
                assert isinstance(bound, Telemetry | Status)
                message = bound
            if isinstance(message, Telemetry):
                readings.extend(message.readings)
            seen = health_of(message)
            before = health.get(seen.device_id)
            health[seen.device_id] = seen if before is None else merge(before, seen)
        result = None
        if readings or health:
            result = await self.store.store_batch(readings, list(health.values()))
            if self.consequences is not None and readings:
                await self.consequences.readings_stored(readings)
        if pending:
            await self.store.record_pending(pending)
        return result

    def _set_aside(self, body: bytes, where: Path, why: str) -> None:
        self.metrics.spool_set_aside.inc()
        log.error("spool record from %s set aside (%s); kept in %s.rejected", where, why, where)
        try:
            with open(f"{where}.rejected", "ab") as out:
                out.write(body + b"\n")
        except OSError as exc:
            log.error("could not keep the set-aside record: %s", exc)


def _append_line(path: Path, line: bytes) -> None:
    with path.open("ab") as out:
        out.write(line + b"\n")
        out.flush()
        os.fsync(out.fileno())


def split(messages: Sequence[Telemetry | Status]) -> tuple[list[Reading], list[DeviceHealth]]:
    """The readings of ``messages`` and one health summary per device."""
    readings: list[Reading] = []
    health: dict[str, DeviceHealth] = {}
    for message in messages:
        if type(message) is Telemetry:
            readings.extend(message.readings)
        seen = health_of(message)
        before = health.get(seen.device_id)
        health[seen.device_id] = seen if before is None else merge(before, seen)
    return readings, list(health.values())


def with_dedup_key(event: Event) -> Event:
    """An event without id or seq gets an id, so that its replay is stored once."""
    if event.dedup_key is not None:
        return event
    return dataclasses.replace(event, event_id=f"spool-{uuid.uuid4().hex}")


def _kind(message: Telemetry | Status) -> str:
    return "telemetry" if isinstance(message, Telemetry) else "status"


def spool_path(directory: str | None, database_url: str, client_id: str) -> Path:
    """Where the spool lives: ``[spool] dir`` when set; else beside a SQLite file; else a
    per-database folder under the user's state directory."""
    if directory:
        return Path(directory)
    if database_url.startswith("sqlite:///"):
        return Path(database_url.removeprefix("sqlite:///") + ".spool")
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    digest = hashlib.sha256(database_url.encode()).hexdigest()[:12]
    return Path(state) / "scgw" / "spool" / f"{client_id}-{digest}"
