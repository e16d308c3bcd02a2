"""Feedback to serial devices: ``81`` frames with status 02 (responder assigned) or 03
(resolved) for the SEQ of the event that raised the alert."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from devices.feedback import Delivery, Feedback, FeedbackKind
from devices.serial_frame import SOURCE, AckStatus
from gateway.registry import LiveRegistry
from gateway.serial.reader import SerialPortReader

log = logging.getLogger(__name__)

STATUS = {
    FeedbackKind.RESPONDER_ASSIGNED: AckStatus.RESPONDER_ASSIGNED,
    FeedbackKind.RESOLVED: AckStatus.RESOLVED,
}


class SerialFeedback:
    """A ``FeedbackSender`` for source ``"serial"``."""

    def __init__(self, readers: Mapping[str, SerialPortReader], registry: LiveRegistry) -> None:
        self._readers = readers
        self._registry = registry

    async def send(self, feedback: Feedback) -> Delivery:
        if feedback.kind is FeedbackKind.ALERT_RECEIVED:
            # Already said: the reader writes 81/01 as soon as the event is durable, before
            # the alert exists. A second 01 would only repeat it.
            return Delivery.SENT
        if feedback.seq is None or not 0 <= feedback.seq <= 0xFFFF:
            log.info("no serial feedback for %s: no event SEQ to answer", feedback.device_id)
            return Delivery.NEVER
        where = self._registry.address_of(feedback.device_id, SOURCE)
        if where is None:
            await self._registry.check()  # registered a moment ago, perhaps
            where = self._registry.address_of(feedback.device_id, SOURCE)
        if where is None:
            log.info("no serial feedback for %s: not on a serial port", feedback.device_id)
            return Delivery.NEVER
        port, addr = where.key
        reader = self._readers.get(port)
        if reader is None:
            log.info("no serial feedback for %s: port %s not configured", feedback.device_id, port)
            return Delivery.NEVER
        if not reader.ack(int(addr, 16), feedback.seq, STATUS[feedback.kind]):
            log.warning("serial feedback for %s waits: port %s closed", feedback.device_id, port)
            return Delivery.LATER
        return Delivery.SENT
