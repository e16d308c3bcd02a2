"""Feedback to the resident's device: "received", "helper on the way", "resolved".

The alert engine says what to tell a device (``DeviceFeedback.tell``, which never waits); a
queue of its own sends it over the transport the device used (MQTT ``cmd`` topic, the serial
``81`` ack, …). Telling a device must never stand in the way of acknowledging or handling
other messages (SPEC, Intake): a broker that does not answer our publishes, or a serial port
that is closed, only delays the feedback, which is retried until it goes out or grows too old
to mean anything.

Per device the order is kept ("received" before "helper on the way"); devices are served
independently, so one device whose link is down does not delay another's feedback.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

log = logging.getLogger(__name__)

RETRY_FIRST = 0.5
RETRY_MAX = 15.0
MAX_AGE = 600.0  # feedback older than this is given up: the resident has long been answered
MAX_WAITING = 10_000  # per gateway; past it the oldest waiting feedback is given up


class FeedbackKind(StrEnum):
    ALERT_RECEIVED = "alert_received"
    RESPONDER_ASSIGNED = "responder_assigned"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Feedback:
    device_id: str
    kind: FeedbackKind
    alert_id: str
    source: str  # the transport of the triggering event: "mqtt", "serial", "zigbee2mqtt", ...
    seq: int | None = None  # the device's own sequence number of that event, if it sent one
    eta_min: int | None = None


class Delivery(StrEnum):
    """What a sender made of one feedback."""

    SENT = "sent"  # handed to the transport (PUBACK from the broker, 81 written)
    LATER = "later"  # the link is down or did not answer: try again
    NEVER = "never"  # this device cannot be told this (no path, no SEQ to answer): give up


class FeedbackSender(Protocol):
    async def send(self, feedback: Feedback) -> Delivery: ...


class DeviceFeedback(Protocol):
    """What the alert side needs: say it, and go on."""

    def tell(self, feedback: Feedback) -> None: ...


# Called once per feedback when it went out (True) or was given up (False), with a reason.
FeedbackResult = Callable[[Feedback, bool, str], Awaitable[None]]


@dataclass(slots=True)
class _Waiting:
    feedback: Feedback
    since: float
    attempts: int = 0


class FeedbackQueue:
    """``DeviceFeedback`` with a queue and senders per source; ``run`` is the worker (one
    supervised task; it keeps a task per device that has feedback waiting)."""

    def __init__(
        self,
        *,
        on_result: FeedbackResult | None = None,
        max_age: float = MAX_AGE,
        max_waiting: int = MAX_WAITING,
        retry_first: float = RETRY_FIRST,
        retry_max: float = RETRY_MAX,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._senders: dict[str, FeedbackSender] = {}
        self.on_result = on_result
        self._max_age = max_age
        self._max_waiting = max_waiting
        self._retry_first = retry_first
        self._retry_max = retry_max
        self._clock = clock
        self._waiting: dict[str, collections.deque[_Waiting]] = {}
        self._count = 0
        self._wake = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.given_up = 0  # counted for metrics and tests
        self.sent = 0

    def register(self, source: str, sender: FeedbackSender) -> None:
        self._senders[source] = sender

    def sender(self, source: str) -> FeedbackSender | None:
        return self._senders.get(source)

    @property
    def waiting(self) -> int:
        return self._count

    def tell(self, feedback: Feedback) -> None:
        queue = self._waiting.setdefault(feedback.device_id, collections.deque())
        queue.append(_Waiting(feedback, self._clock()))
        self._count += 1
        if self._count > self._max_waiting:
            self._drop_oldest()
        self._wake.set()

    def _drop_oldest(self) -> None:
        oldest = min(self._waiting.values(), key=lambda q: q[0].since if q else float("inf"))
        if oldest:
            dropped = oldest.popleft()
            self._count -= 1
            self.given_up += 1
            log.warning(
                "device feedback backlog full; gave up %s to %s",
                dropped.feedback.kind,
                dropped.feedback.device_id,
            )

    async def run(self) -> None:
        """Start a sender task for every device with feedback waiting, as it arrives."""
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    self._wake.clear()
                    for device_id, queue in self._waiting.items():
                        if queue and device_id not in self._tasks:
                            task = tg.create_task(
                                self._serve(device_id), name=f"feedback-{device_id}"
                            )
                            self._tasks[device_id] = task
                            task.add_done_callback(functools.partial(self._finished, device_id))
                    await self._wake.wait()
        finally:
            self._tasks.clear()

    def _finished(self, device_id: str, _task: asyncio.Task[None]) -> None:
        self._tasks.pop(device_id, None)
        if self._waiting.get(device_id):
            self._wake.set()  # told more after the task's last look: serve it again

    async def _serve(self, device_id: str) -> None:
        queue = self._waiting[device_id]
        while queue:
            item = queue[0]
            done, why = await self._attempt(item)
            if done is None:
                # Not now: back off, the rest of this device's feedback waits behind it.
                item.attempts += 1
                delay = min(self._retry_first * 2 ** (item.attempts - 1), self._retry_max)
                await asyncio.sleep(delay)
                continue
            queue.popleft()
            self._count -= 1
            if done:
                self.sent += 1
            else:
                self.given_up += 1
            await self._report(item.feedback, done, why)
        if not queue:
            self._waiting.pop(device_id, None)

    async def _attempt(self, item: _Waiting) -> tuple[bool | None, str]:
        feedback = item.feedback
        if self._clock() - item.since > self._max_age:
            return False, f"not sent within {self._max_age:g}s"
        sender = self._senders.get(feedback.source)
        if sender is None:
            log.info("no feedback path for %s devices (%s)", feedback.source, feedback.device_id)
            return False, f"no feedback path for {feedback.source}"
        delivery = await sender.send(feedback)
        if delivery is Delivery.SENT:
            return True, "sent"
        if delivery is Delivery.NEVER:
            return False, "not possible for this device"
        return None, "later"

    async def _report(self, feedback: Feedback, sent: bool, why: str) -> None:
        # Recording it (a timeline entry) is the caller's bookkeeping; its own errors are
        # its to handle (a database away must not fail this device's later feedback).
        if self.on_result is not None:
            await self.on_result(feedback, sent, why)
