"""``GET /api/v1/alerts/stream``: alert changes as server-sent events.

One shared task per process polls the alert timeline (every state change, repeat, notice and
note writes an entry there, whichever gateway instance made it) and fans the changed alerts
out to every open stream; it runs only while someone listens. Each event's ``id`` is the
highest timeline entry id it covers, so a client that reconnects with ``Last-Event-ID`` gets
what changed since (``EventSource`` does this by itself); without one, or when too far
behind, it gets a ``snapshot`` of the active queue first. Comment lines keep idle connections
alive through proxies.

PostgreSQL hands out identity values at insert, not at commit: an entry with a lower id can
become visible after a higher one. The poller therefore keeps re-reading ids it skipped for
``gap_wait`` seconds before giving up on them (a rolled-back insert leaves a gap for ever).
Events may repeat (a replay overlapping the live feed); the client upserts by alert id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

import orjson

from alerts.models import ACTIVE_STATES
from gateway.http.api.console import Console
from gateway.storage.base import StoreError, TimelineChange

log = logging.getLogger(__name__)

POLL_INTERVAL: Final = 0.5
HEARTBEAT: Final = 15.0
GAP_WAIT: Final = 10.0
MAX_GAPS: Final = 1000
MAX_REPLAY: Final = 5000  # timeline entries; further behind, a snapshot is cheaper
QUEUE_MAX: Final = 1000  # events waiting for one slow client before it is dropped
RETRY_MS: Final = 1000  # how soon EventSource reconnects after a drop


@dataclass(frozen=True, slots=True)
class FeedEvent:
    id: int
    name: str  # "alert" or "snapshot"
    data: bytes  # JSON

    def encode(self) -> bytes:
        return b"id: %d\nevent: %s\ndata: %s\n\n" % (self.id, self.name.encode(), self.data)


@dataclass(eq=False)
class Subscriber:
    events: deque[FeedEvent] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False

    def push(self, event: FeedEvent) -> None:
        if len(self.events) >= QUEUE_MAX:
            # Too slow to keep up: end its stream; it reconnects and resumes by id.
            self.closed = True
        else:
            self.events.append(event)
        self.wake.set()

    def close(self) -> None:
        self.closed = True
        self.wake.set()


class AlertFeed:
    def __init__(
        self,
        console: Console,
        *,
        interval: float = POLL_INTERVAL,
        gap_wait: float = GAP_WAIT,
        heartbeat: float = HEARTBEAT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._console = console
        self._interval = interval
        self._gap_wait = gap_wait
        self.heartbeat = heartbeat
        self._clock = clock
        self._subs: set[Subscriber] = set()
        self._task: asyncio.Task[None] | None = None
        self._cursor = 0
        self._gaps: dict[int, float] = {}
        self._lock = asyncio.Lock()

    @property
    def listeners(self) -> int:
        return len(self._subs)

    async def latest_id(self) -> int:
        return await self._console.store.latest_timeline_id()

    async def subscribe(self) -> Subscriber:
        """Register a listener; from here on it misses no change (it may see one twice)."""
        async with self._lock:
            if self._task is None or self._task.done():
                # The cursor is fixed before the caller reads its snapshot or replay, so
                # anything after that read is also after the cursor.
                self._cursor = await self.latest_id()
                self._gaps.clear()
                self._task = asyncio.create_task(self._run(), name="alert-feed")
            sub = Subscriber()
            self._subs.add(sub)
            return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        if not self._subs and self._task is not None:
            self._task.cancel()
            self._task = None

    async def stop(self) -> None:
        task, self._task = self._task, None
        for sub in list(self._subs):
            sub.close()
        self._subs.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self.poll()
                except StoreError as exc:  # database away for a moment: keep listening
                    log.warning("alert feed: %s", exc)
                await asyncio.sleep(self._interval)
        finally:
            # Whatever ended the poller, listeners must not wait on a dead feed: their
            # streams end, and EventSource reconnects (starting a fresh poller).
            for sub in list(self._subs):
                sub.close()

    async def poll(self) -> None:
        now = self._clock()
        self._gaps = {i: t for i, t in self._gaps.items() if now - t < self._gap_wait}
        floor = min(self._gaps) - 1 if self._gaps else self._cursor
        rows = await self._console.store.timeline_changes(floor, MAX_REPLAY)
        fresh = [r for r in rows if r.id > self._cursor or r.id in self._gaps]
        if not rows:
            return
        seen = {r.id for r in rows}
        top = max(seen)
        for i in range(self._cursor + 1, top):
            if i not in seen and len(self._gaps) < MAX_GAPS:
                self._gaps[i] = now
        for r in fresh:
            self._gaps.pop(r.id, None)
        self._cursor = max(self._cursor, top)
        if fresh and self._subs:
            for event in await self.events_for(fresh):
                for sub in list(self._subs):
                    sub.push(event)

    async def events_for(self, rows: Sequence[TimelineChange]) -> list[FeedEvent]:
        """One event per changed alert, in the order of its latest entry (so a client that
        resumes from an event's id has everything before it)."""
        latest: dict[str, int] = {}
        actions: dict[str, list[str]] = {}
        for row in rows:
            key = row.alert_id
            latest[key] = max(latest.get(key, 0), row.id)
            actions.setdefault(key, []).append(row.action)
        alerts = []
        for alert_id in sorted(latest, key=latest.__getitem__):
            alert = await self._console.store.get_alert(alert_id)
            if alert is not None:
                alerts.append(alert)
        views = await self._console.alert_views(alerts)
        return [
            FeedEvent(
                latest[v.id],
                "alert",
                orjson.dumps(
                    {"alert": v.model_dump(mode="json"), "actions": actions[v.id]},
                ),
            )
            for v in views
        ]

    async def snapshot(self) -> FeedEvent:
        """The active queue as it is now."""
        at = await self.latest_id()
        alerts = await self._console.store.list_alerts(states=ACTIVE_STATES, limit=5000)
        views = await self._console.alert_views(alerts)
        body = {"alerts": [v.model_dump(mode="json") for v in views]}
        return FeedEvent(at, "snapshot", orjson.dumps(body))

    async def replay(self, last_id: int) -> list[FeedEvent] | None:
        """What changed after ``last_id``; None when a snapshot is the better answer."""
        if last_id > await self.latest_id():
            return None  # an id from another database (or a reset one)
        rows = await self._console.store.timeline_changes(last_id, MAX_REPLAY + 1)
        if len(rows) > MAX_REPLAY:
            return None
        return await self.events_for(rows)

    async def stream(self, last_id: int | None) -> AsyncIterator[bytes]:
        sub = await self.subscribe()
        try:
            yield b"retry: %d\n\n" % RETRY_MS
            first = None if last_id is None else await self.replay(last_id)
            for event in first if first is not None else [await self.snapshot()]:
                yield event.encode()
            while True:
                # Cleared before draining: a push while we send still wakes the next wait.
                sub.wake.clear()
                while sub.events:
                    yield sub.events.popleft().encode()
                if sub.closed:
                    break
                try:
                    await asyncio.wait_for(sub.wake.wait(), self.heartbeat)
                except TimeoutError:
                    yield b": keepalive\n\n"
        finally:
            self.unsubscribe(sub)
