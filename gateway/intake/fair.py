"""Round robin over devices for the event path, alarms first.

A device gone mad (a stuck contact sending thousands of well-formed events) must not delay
another device's press (SPEC, Promises). Arrival order would put the press behind everything
the flooder sent first; served per device in turn, the press waits for at most one of the
flooder's inputs. Devices whose next input carries an alarm are served before devices whose
next input does not (a door contact's chatter never stands before a smoke alarm). Order is
kept per device, which is the order that matters (a press and its cancel).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self, key: Callable[[T], str], urgent: Callable[[T], bool]) -> None:
        self._key = key
        self._urgent = urgent
        # Insertion-ordered: the key at the front is served next, then goes to the back of
        # the dict its new head belongs in.
        self._alarms: dict[str, collections.deque[T]] = {}
        self._others: dict[str, collections.deque[T]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def push(self, item: T) -> None:
        key = self._key(item)
        queue = self._alarms.get(key)
        if queue is None:
            queue = self._others.get(key)
        if queue is None:
            queue = collections.deque()
            (self._alarms if self._urgent(item) else self._others)[key] = queue
        queue.append(item)
        self._size += 1

    def extend(self, items: Iterable[T]) -> None:
        for item in items:
            self.push(item)

    def push_front(self, item: T) -> None:
        """Back to the head of its device's queue, served first again (a retry keeps that
        device's order, and it is what that device is waiting for)."""
        key = self._key(item)
        queue = self._alarms.pop(key, None)
        if queue is None:
            queue = self._others.pop(key, None)
        if queue is None:
            queue = collections.deque()
        queue.appendleft(item)
        if self._urgent(item):
            self._alarms = {key: queue, **self._alarms}
        else:
            self._others = {key: queue, **self._others}
        self._size += 1

    def pop(self) -> T | None:
        source = self._alarms if self._alarms else self._others
        if not source:
            return None
        key = next(iter(source))
        queue = source.pop(key)
        item = queue.popleft()
        if queue:
            (self._alarms if self._urgent(queue[0]) else self._others)[key] = queue
        self._size -= 1
        return item

    def drain(self) -> list[T]:
        """Everything, in order per device (for handing back at shutdown)."""
        out = [i for q in (*self._alarms.values(), *self._others.values()) for i in q]
        self._alarms.clear()
        self._others.clear()
        self._size = 0
        return out
