"""The event path: inputs that carry an event (a press, an alarm, a cancel) and responders'
replies, one at a time, fair between devices and alarms first; each made durable, acted on
(the alert engine) and only then acknowledged.

While it works it holds the urgent gate (gateway/priority.py): the bulk path and the routers
step aside and the native telemetry lane stops reading its socket, so a press never waits
behind readings, whatever transport brought it. The queue is the path's own: a supervised
restart after a fault continues with the same queue (the failed input first).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from alerts.replies import Reply
from devices.codec import Rejected, RejectReason
from devices.codecs import Decoded
from devices.health import health_of
from devices.models import ALARM_EVENTS, Event, Status, Telemetry
from gateway.intake.consequences import Consequences
from gateway.intake.durable import Durable, split
from gateway.intake.fair import FairQueue
from gateway.intake.parcel import Parcel
from gateway.intake.poison import PoisonGuard, Verdict
from gateway.intake.rejections import RejectionLog
from gateway.metrics import Metrics
from gateway.priority import UrgentGate
from gateway.registry import LiveRegistry
from gateway.storage.base import StoreRefused

log = logging.getLogger(__name__)

LANE = "event"  # the queue-depth label: every source's events share this path


class EventPath:
    def __init__(
        self,
        *,
        durable: Durable,
        registry: LiveRegistry,
        consequences: Consequences,
        metrics: Metrics,
        gate: UrgentGate,
        rejections: Callable[[str], RejectionLog],
    ) -> None:
        self._durable = durable
        self._registry = registry
        self._consequences = consequences
        self._metrics = metrics
        self._gate = gate
        self._rejections = rejections
        self._queue: FairQueue[Parcel] = FairQueue(lambda p: p.fair_key, lambda p: p.alarm)
        self._wake = asyncio.Event()
        self._poison = PoisonGuard()
        self.busy = False  # an input taken from the queue is being handled (graceful stop)

    @property
    def depth(self) -> int:
        return len(self._queue)

    def put(self, parcel: Parcel) -> None:
        self._queue.push(parcel)
        self._wake.set()

    async def run(self) -> None:
        queue = self._queue
        while True:
            while not queue:
                self._wake.clear()
                await self._wake.wait()
            self.busy = True
            try:
                # Held across a burst, so a flood does not switch the gate off and on per input.
                with self._gate.urgent():
                    while (parcel := queue.pop()) is not None:
                        self._metrics.queue_depth.labels(lane=LANE).set(len(queue))
                        await self._handle_one(parcel)
            finally:
                self.busy = False

    async def _handle_one(self, parcel: Parcel) -> None:
        try:
            await self.handle(parcel)
        except StoreRefused as exc:
            # Bad input, not a fault: the database cannot store what it says (SPEC, Intake).
            # Set aside at once and durably, acknowledged, never retried — other devices'
            # inputs are not held for it.
            await self._durable.set_aside(parcel.lane, parcel.where, str(exc), repr(parcel.body))
            self._rejections(parcel.lane)(parcel.where, Rejected(RejectReason.UNSTORABLE, str(exc)))
            self._acked(parcel)
        except asyncio.CancelledError:
            self._queue.push_front(parcel)  # shutdown: the input is still unacknowledged
            raise
        except Exception:
            # A bug (see gateway/intake/poison.py): retried first in line by the restarted
            # task; if it keeps failing it is left unacknowledged (its source sends it again)
            # so the presses behind it still flow; set aside only once proven poison.
            verdict = self._poison.failed(parcel.poison_key)
            if verdict is Verdict.RETRY:
                self._queue.push_front(parcel)
                raise
            if verdict is Verdict.SKIP:
                log.exception("input on %s keeps failing; left for a redelivery", parcel.where)
                parcel.ack.later()
                return
            log.exception("set aside poison input on %s: %r", parcel.where, parcel.body)
            await self._durable.set_aside(
                parcel.lane, parcel.where, "poison: handling kept failing", repr(parcel.body)
            )
            self._rejections(parcel.lane)(
                parcel.where, Rejected(RejectReason.POISON, "handler failed")
            )
            self._acked(parcel)
        else:
            self._poison.handled += 1

    async def handle(self, parcel: Parcel) -> None:
        body = parcel.body
        if isinstance(body, Reply):
            # Acted on before the ack, like events: a crash in between replays the reply, and
            # accepting an accepted alert again changes nothing. The database away: spooled.
            await self._durable.reply(parcel.lane, body, self._consequences.reply)
            self._acked(parcel)
            return
        # A device, resident or volunteer registered a moment ago is known to this event.
        current = await self._registry.check_after(parcel.received_mono)
        device_id = self._registry.device_at(body.address)
        if device_id is None:
            await self._unregistered(parcel, body, current=current)
            return
        new_events: list[Event] = []
        readings: list[Telemetry | Status] = []
        for message in body.bind(device_id):
            if type(message) is not Event:
                assert isinstance(message, Telemetry | Status)
                readings.append(message)
                continue
            result = await self._durable.event(
                parcel.lane, message, on_spooling=self._consequences.event_spooling
            )
            if result.spooled:
                continue
            if result.new:
                self._metrics.stored.labels(kind="event").inc()
                new_events.append(message)
            else:
                self._metrics.duplicates.labels(kind="event").inc()
            await self._consequences.event_stored(message, duplicate=not result.new)
        if readings:
            # Whatever came with the event (a zigbee sensor's temperature and battery).
            values, health = split(readings)
            await self._durable.readings(
                parcel.lane, values, health, after=self._consequences.readings_stored
            )
        self._acked(parcel)
        if new_events:
            await self._durable.health(parcel.lane, [health_of(e) for e in new_events])

    async def _unregistered(self, parcel: Parcel, body: Decoded, *, current: bool) -> None:
        if not current:
            # The registry cannot be asked (database away) and the address is not in memory:
            # spooled as it is, under its provisional id; the drain sorts it out.
            unchecked: list[Telemetry | Status] = []
            for message in body.messages:
                if type(message) is Event:
                    await self._durable.event(parcel.lane, message, checked=False)
                else:
                    assert isinstance(message, Telemetry | Status)
                    unchecked.append(message)
            if unchecked:
                await self._durable.readings(parcel.lane, (), (), unchecked=unchecked)
            self._acked(parcel)
            return
        sightings = body.sightings()
        await self._durable.pending(parcel.lane, sightings)
        self._metrics.pending.inc(len(sightings))
        for message in body.messages:
            if type(message) is Event and message.type in ALARM_EVENTS:
                # Kept for adoption, and an alarm all the same: the desk sees it now.
                await self._consequences.unregistered_alarm(message)
        self._rejections(parcel.lane)(
            parcel.where,
            Rejected(RejectReason.UNKNOWN_DEVICE, f"{body.address.pending_id()} not registered"),
        )
        self._acked(parcel)

    def _acked(self, parcel: Parcel) -> None:
        parcel.ack.done()
        self._metrics.ack_lag.labels(lane=parcel.lane).observe(
            time.monotonic() - parcel.received_mono
        )
