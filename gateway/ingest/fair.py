"""Round-robin over devices for the event lane.

A device gone mad (a stuck contact sending thousands of well-formed events) must not delay
another device's press (SPEC Promises). Arrival order would put the press behind everything
the flooder sent first; served per device in turn, the press waits for at most one of the
flooder's messages. Order is kept per device, which is the order that matters (a press and
its cancel). The lane's Receive Maximum is large, so what the broker holds reaches this
queue quickly instead of waiting behind the flood in the broker.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable

from gateway.mqtt.lane import Inbound

__all__ = ["FairQueue", "device_key"]


def device_key(topic: str) -> str:
    """``prefix/<device>/event`` → ``<device>``. Responder replies
    (``prefix/responders/<id>/reply``) share one queue; any other topic is its own key."""
    parts = topic.split("/", 2)
    return parts[1] if len(parts) == 3 else topic


class FairQueue:
    def __init__(self) -> None:
        # Insertion-ordered: the device at the front is served next, then moves to the back.
        self._queues: dict[str, collections.deque[Inbound]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def extend(self, messages: Iterable[Inbound]) -> None:
        for message in messages:
            key = device_key(message.topic)
            queue = self._queues.get(key)
            if queue is None:
                queue = self._queues[key] = collections.deque()
            queue.append(message)
            self._size += 1

    def push_front(self, message: Inbound) -> None:
        """Back to the head of its device's queue (a retry keeps that device's order)."""
        key = device_key(message.topic)
        queue = self._queues.pop(key, None) or collections.deque()
        queue.appendleft(message)
        # Served first again: the retry is what that device is waiting for.
        self._queues = {key: queue, **self._queues}
        self._size += 1

    def pop(self) -> Inbound | None:
        if not self._queues:
            return None
        key = next(iter(self._queues))
        queue = self._queues.pop(key)
        message = queue.popleft()
        if queue:
            self._queues[key] = queue  # to the back of the round
        self._size -= 1
        return message

    def drain(self) -> list[Inbound]:
        """Everything, in arrival order per device (for handing back at shutdown)."""
        out = [m for queue in self._queues.values() for m in queue]
        self._queues.clear()
        self._size = 0
        return out
