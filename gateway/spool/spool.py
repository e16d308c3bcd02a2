"""The spool: a bounded directory of segments, appended in order, drained oldest first.

Bounds are in bytes on disk. Readings (which the broker can keep for us: a refused readings
batch is simply not acked) may fill ``readings_share`` of ``max_bytes``; the rest is headroom
for events, which are always written (over ``max_bytes`` if need be — only the disk itself can
refuse them, and then the source is not acked). A spool that refused readings, or is over
``max_bytes``, is *full*: reported loudly on ``/readyz``, in metrics and the log.

All file work runs on one worker thread, in call order; the event loop never blocks on fsync.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TypeVar

from gateway.spool import records as rec
from gateway.spool.segments import (
    SegmentError,
    SegmentWriter,
    read_segment,
    segment_index,
    segment_name,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class SpoolState(StrEnum):
    OK = "ok"  # empty: writes go to the database
    SPOOLING = "spooling"  # records wait for the database; new writes queue behind them
    FULL = "full"  # readings are refused (not acked, the broker keeps them); events still in


@dataclass(slots=True)
class Segment:
    path: Path
    index: int
    size: int
    records: int


@dataclass(frozen=True, slots=True)
class SpoolStats:
    state: SpoolState
    records: int
    bytes: int
    max_bytes: int
    segments: int


class Spool:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        readings_share: float = 0.9,
        segment_bytes: int = 1024 * 1024,
        on_change: Callable[[SpoolStats], None] | None = None,
    ) -> None:
        if max_bytes <= 0 or not 0 < readings_share <= 1:
            raise ValueError("max_bytes > 0 and 0 < readings_share <= 1")
        self.directory = directory
        self.max_bytes = max_bytes
        self.readings_limit = int(max_bytes * readings_share)
        self.segment_bytes = segment_bytes
        self.on_change = on_change
        self._sealed: list[Segment] = []  # oldest first; includes the one being drained
        self._writer: SegmentWriter | None = None
        self._writer_index = 0
        self._next_index = 1
        self._applied = 0  # records of the segment being drained already applied
        self._refused = False
        self._state = SpoolState.OK
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scgw-spool")
        self.nonempty = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    async def open(self) -> list[rec.Record]:
        """Find segments a previous process left (torn tails tolerated). Returns their outage
        notices and nothing else is read twice: the drain reads the segments again later."""
        found = await self._io(self._scan)
        notices: list[rec.Record] = []
        for segment, bodies in found:
            self._sealed.append(segment)
            for body in bodies:
                if body.startswith(b'{"k":"notice"'):
                    try:
                        notices.append(rec.loads(body))
                    except rec.SpoolFormatError as exc:
                        log.error("spool %s: unreadable notice: %s", segment.path, exc)
        if self._sealed:
            self._next_index = self._sealed[-1].index + 1
            log.warning(
                "spool %s holds %d records from before; they are replayed when the database"
                " answers",
                self.directory,
                self.records,
            )
        self._changed()
        return notices

    def _scan(self) -> list[tuple[Segment, list[bytes]]]:
        if not self.directory.is_dir():
            return []
        out: list[tuple[Segment, list[bytes]]] = []
        for path in sorted(self.directory.iterdir()):
            index = segment_index(path)
            if index is None:
                continue
            try:
                scan = read_segment(path)
            except SegmentError as exc:
                log.error("spool: %s set aside: %s", path, exc)
                path.rename(path.with_name(path.name + ".bad"))
                continue
            if scan.torn_bytes:
                log.warning(
                    "spool %s: %d bytes of a torn last record ignored (a crash mid-write;"
                    " that message was never acked)",
                    path,
                    scan.torn_bytes,
                )
            if not scan.records:
                path.unlink()
                continue
            out.append((Segment(path, index, scan.good_bytes, len(scan.records)), scan.records))
        return out

    async def close(self) -> None:
        async with self._lock:
            writer, self._writer = self._writer, None
            if writer is not None:
                await self._io(writer.close)
        self._executor.shutdown(wait=True)

    # -- state --------------------------------------------------------------------------------
    @property
    def records(self) -> int:
        writer = self._writer.records if self._writer is not None else 0
        return sum(s.records for s in self._sealed) + writer - self._applied

    @property
    def size_bytes(self) -> int:
        writer = self._writer.size if self._writer is not None else 0
        return sum(s.size for s in self._sealed) + writer

    @property
    def applied_in_oldest(self) -> int:
        """Records of the oldest segment already replayed (the drain resumes after them)."""
        return self._applied

    @property
    def active(self) -> bool:
        """Records wait: every write must queue behind them to keep the order."""
        return bool(self._sealed) or (self._writer is not None and self._writer.records > 0)

    @property
    def state(self) -> SpoolState:
        return self._state

    def stats(self) -> SpoolStats:
        return SpoolStats(
            self._state, self.records, self.size_bytes, self.max_bytes, len(self._sealed)
        )

    def relieved(self) -> None:
        """The database took a write directly: a refusal no longer stands."""
        if self._refused and not self.active:
            self._refused = False
            self._changed()

    def _changed(self) -> None:
        before = self._state
        if self._refused or (self.active and self.size_bytes >= self.max_bytes):
            state = SpoolState.FULL
        elif self.active:
            state = SpoolState.SPOOLING
        else:
            state = SpoolState.OK
        self._state = state
        if self.active:
            self.nonempty.set()
        else:
            self.nonempty.clear()
        if state is not before:
            if state is SpoolState.FULL:
                log.error(
                    "SPOOL FULL (%d of %d bytes in %s): readings are no longer accepted until"
                    " the database is back; events are still spooled",
                    self.size_bytes,
                    self.max_bytes,
                    self.directory,
                )
            elif state is SpoolState.SPOOLING:
                log.warning("database unavailable: spooling to %s", self.directory)
            else:
                log.info("spool drained: writing to the database again")
        if self.on_change is not None:
            self.on_change(self.stats())

    # -- writing ------------------------------------------------------------------------------
    async def append(self, record: rec.Record) -> bool:
        """Durably append ``record``; True once it is on disk. False: refused for space
        (readings only). Raises OSError when the disk refuses."""
        body = rec.dumps(record)
        async with self._lock:
            return await self._append(record, body)

    async def append_if_active(self, record: rec.Record) -> bool | None:
        """Append only when records already wait (a write must queue behind them to keep
        the order); None when the spool is empty and the caller writes to the database."""
        if not self.active:  # the common case, without taking the lock
            return None
        body = rec.dumps(record)
        async with self._lock:
            if not self.active:
                return None
            return await self._append(record, body)

    async def _append(self, record: rec.Record, body: bytes) -> bool:
        size = len(body) + 8
        if not rec.is_event(record) and self.size_bytes + size > self.readings_limit:
            if not self._refused:
                self._refused = True
                self._changed()
            return False
        try:
            await self._io(self._write, body)
        finally:
            self._changed()
        return True

    def _write(self, body: bytes) -> None:
        writer = self._writer
        if writer is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            writer = SegmentWriter(self.directory / segment_name(self._next_index))
            self._writer, self._writer_index = writer, self._next_index
            self._next_index += 1
        try:
            writer.append(body)
        except OSError:
            # A partial record would hide every later one in this file: cut it off if the
            # disk lets us, and go on in a fresh segment either way.
            with contextlib.suppress(OSError):
                os.truncate(writer.path, writer.size)
            with contextlib.suppress(OSError):
                writer.close()
            self._writer = None
            if writer.records:
                self._sealed.append(
                    Segment(writer.path, self._writer_index, writer.size, writer.records)
                )
            else:
                with contextlib.suppress(OSError):
                    writer.path.unlink()
            raise
        if writer.size >= self.segment_bytes:
            self._seal()

    def _seal(self) -> None:
        writer = self._writer
        if writer is None or writer.records == 0:
            return
        writer.close()
        self._sealed.append(Segment(writer.path, self._writer_index, writer.size, writer.records))
        self._writer = None

    # -- draining -----------------------------------------------------------------------------
    async def next_segment(self) -> tuple[Segment, list[bytes]] | None:
        """The oldest segment and its records (sealing the one being written if it is the
        only one left); None when the spool is empty."""
        async with self._lock:
            if not self._sealed:
                await self._io(self._seal)
            if not self._sealed:
                self._changed()
                return None
            segment = self._sealed[0]
        scan = await self._io(read_segment, segment.path)
        if len(scan.records) != segment.records:
            log.error(
                "spool %s: %d records readable of %d written",
                segment.path,
                len(scan.records),
                segment.records,
            )
            segment.records = len(scan.records)
        return segment, scan.records

    def applied(self, count: int = 1) -> None:
        """``count`` more records of the oldest segment reached the database."""
        self._applied += count
        if self.on_change is not None:
            self.on_change(self.stats())

    async def remove(self, segment: Segment) -> None:
        """The oldest segment is fully applied: delete it."""
        async with self._lock:
            await self._io(segment.path.unlink, True)
            self._sealed.remove(segment)
            self._applied = 0
            if self._refused and self.size_bytes < self.readings_limit:
                self._refused = False
            self._changed()

    async def _io(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)
