"""One reopen policy for everything that holds a connection: MQTT lanes and the publisher,
serial ports. Jittered exponential backoff, reset once a connection has stayed up a while.

Jitter keeps many gateways (or lanes, or ports) that lost the same broker or bus from coming
back in the same instant; the reset after ``stable_after`` seconds means a link that flaps
once a day starts its next retry fast, while one that drops right after every open backs off.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backoff"]


@dataclass(slots=True)
class Backoff:
    first: float = 0.2
    maximum: float = 10.0
    stable_after: float = 10.0
    clock: Callable[[], float] = time.monotonic
    _delay: float = field(init=False, default=0.0)
    _opened_at: float | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._delay = self.first

    def opened(self) -> None:
        """The connection is up (call when it is usable: subscribed, port open)."""
        self._opened_at = self.clock()

    def peek(self) -> float:
        """The current step (before jitter), for messages that say "retrying in about …"."""
        return self._delay

    def next_delay(self) -> float:
        """How long to wait before the next try; doubles up to ``maximum``. A connection that
        had stayed up ``stable_after`` seconds starts again from ``first``."""
        opened, self._opened_at = self._opened_at, None
        if opened is not None and self.clock() - opened >= self.stable_after:
            self._delay = self.first
        delay = self._delay * random.uniform(0.5, 1.0)
        self._delay = min(self._delay * 2, self.maximum)
        return delay

    async def wait(self) -> float:
        """Sleep for ``next_delay()``; returns the time slept."""
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay
