"""The intake's front door: urgent by kind, then the event path or the bulk path.

Every transport calls ``route`` with what its codec decoded and the input's acknowledgement.
An input that carries an event — from native MQTT, zigbee2mqtt, a serial frame or a DC-09
report alike — goes the event path; readings and statuses go the bulk path, bound to their
registered device (or to the pending list, or, with the database away and the address not in
memory, spooled unchecked for the drain to sort out).
"""

from __future__ import annotations

import logging
import time

from alerts.replies import Reply
from devices.codec import Rejected, RejectReason
from devices.codecs import Decoded
from devices.models import Status, Telemetry
from gateway.intake.bulk_path import BulkItem, BulkPath, Room
from gateway.intake.consequences import Consequences
from gateway.intake.durable import Durable
from gateway.intake.event_path import EventPath
from gateway.intake.parcel import NO_ACK, Ack, Parcel
from gateway.intake.rejections import RejectionLog
from gateway.metrics import Metrics
from gateway.priority import UrgentGate
from gateway.registry import LiveRegistry

log = logging.getLogger(__name__)


class Intake:
    def __init__(
        self,
        *,
        durable: Durable,
        registry: LiveRegistry,
        consequences: Consequences,
        metrics: Metrics,
        gate: UrgentGate,
        batch_max_rows: int,
        batch_max_delay: float,
    ) -> None:
        self.durable = durable
        self.registry = registry
        self.metrics = metrics
        self.gate = gate
        self._rejections: dict[str, RejectionLog] = {}
        self.events = EventPath(
            durable=durable,
            registry=registry,
            consequences=consequences,
            metrics=metrics,
            gate=gate,
            rejections=self.rejections,
        )
        self.bulk = BulkPath(
            durable=durable,
            consequences=consequences,
            metrics=metrics,
            gate=gate,
            rejections=self.rejections,
            max_rows=batch_max_rows,
            max_delay=batch_max_delay,
        )

    def rejections(self, lane: str) -> RejectionLog:
        log_ = self._rejections.get(lane)
        if log_ is None:
            log_ = self._rejections[lane] = RejectionLog(self.metrics, lane)
        return log_

    def reject(self, lane: str, where: str, rejection: Rejected) -> None:
        self.rejections(lane)(where, rejection)

    @property
    def busy(self) -> bool:
        """Something taken in is not yet durable and acknowledged (graceful stop waits)."""
        events, bulk = self.events, self.bulk
        return events.busy or bulk.busy or bool(events.depth) or bool(bulk.depth)

    # -- the door -----------------------------------------------------------------------------
    def reply(self, lane: str, where: str, reply: Reply, ack: Ack, *, received_mono: float) -> None:
        """A responder's reply from the app: the event path (it stops an escalation)."""
        self.events.put(Parcel(lane, where, reply, ack, f"{where}#{reply}", received_mono))

    async def route(
        self,
        lane: str,
        where: str,
        decoded: Decoded,
        ack: Ack,
        *,
        poison_key: str,
        received_mono: float | None = None,
        room: Room = Room.WAIT,
    ) -> None:
        """Take one decoded input. Returns once it is queued on its path (the ack follows
        when it is durable); for the bulk path it may wait for room (``room``)."""
        arrived = time.monotonic() if received_mono is None else received_mono
        for problem in decoded.problems:
            # A part of the input that was ignored while the rest is used: counted, logged.
            self.reject(lane, where, Rejected(RejectReason.INVALID_PAYLOAD, problem))
        for flag in decoded.flags:
            self.metrics.flagged.labels(lane=lane, flag=flag).inc()
        if decoded.has_event:
            self.events.put(Parcel(lane, where, decoded, ack, poison_key, arrived))
            return
        if not decoded.messages:
            ack.done()
            return
        registry = self.registry
        device_id = registry.device_at(decoded.address)
        current = True
        if device_id is None:
            # Perhaps registered a moment ago: one cheap read tells (at most one per burst).
            current = await registry.check_after(arrived)
            device_id = registry.device_at(decoded.address)
        items: list[BulkItem] = []
        if device_id is not None:
            for message in decoded.bind(device_id):
                assert isinstance(message, Telemetry | Status)
                items.append(BulkItem(lane, message, NO_ACK, arrived, poison_key=poison_key))
        elif current:
            self.reject(
                lane,
                where,
                Rejected(
                    RejectReason.UNKNOWN_DEVICE, f"{decoded.address.pending_id()} not registered"
                ),
            )
            for sighting in decoded.sightings():
                items.append(BulkItem(lane, sighting, NO_ACK, arrived, poison_key=poison_key))
        else:
            for message in decoded.messages:
                assert isinstance(message, Telemetry | Status)
                items.append(
                    BulkItem(lane, message, NO_ACK, arrived, unchecked=True, poison_key=poison_key)
                )
        last = items[-1]
        items[-1] = BulkItem(
            last.lane, last.message, ack, last.received_mono, last.unchecked, last.poison_key
        )
        await self.bulk.put(items, room)
