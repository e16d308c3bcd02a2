"""Event-path priority: while a press (or any event) is being stored, raised and notified,
bulk telemetry steps aside.

SPEC: "The event path must never queue behind telemetry." Separate lanes are not enough in one
event loop: a 5,000-message telemetry batch decodes for ~100 ms without an ``await``, and every
database round trip of the press path would wait behind such a stretch. So the event path holds
this gate; the telemetry loop yields every few dozen messages and, while the gate is held,
waits; and the telemetry lane stops reading its socket (the broker keeps the messages, unacked
— nothing is lost, telemetry is only late by the few milliseconds a press takes).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

__all__ = ["URGENT", "UrgentGate"]

# True inside urgent work (and the tasks it starts): lets lower layers put that work first,
# e.g. the SQLite worker thread's queue (gateway/storage/worker.py).
URGENT: ContextVar[bool] = ContextVar("scgw_urgent", default=False)


class UrgentGate:
    def __init__(self) -> None:
        self._active = 0
        self._clear = asyncio.Event()
        self._clear.set()
        self._listeners: list[Callable[[bool], None]] = []
        self.entered = 0  # how often urgent work began (tests, metrics)

    @property
    def active(self) -> bool:
        return self._active > 0

    def on_change(self, listener: Callable[[bool], None]) -> None:
        """``listener(True)`` when urgent work begins, ``listener(False)`` when none is left."""
        self._listeners.append(listener)

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        self._active += 1
        self.entered += 1
        token = URGENT.set(True)
        if self._active == 1:
            self._clear.clear()
            for listener in self._listeners:
                listener(True)
        try:
            yield
        finally:
            URGENT.reset(token)
            self._active -= 1
            if self._active == 0:
                self._clear.set()
                for listener in self._listeners:
                    listener(False)

    async def step_aside(self) -> None:
        """Called by bulk work between slices: lets the loop run anything ready (a press that
        just arrived), then waits while urgent work is in progress."""
        await asyncio.sleep(0)
        while self._active:
            await self._clear.wait()
