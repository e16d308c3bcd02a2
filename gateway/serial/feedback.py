"""Feedback to serial devices: ``81`` frames with status 02 (responder assigned) or 03
(resolved) for the SEQ of the event that raised the alert."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from devices.feedback import Feedback, FeedbackKind
from devices.index import AddressIndex
from devices.serial_frame import SOURCE, AckStatus
from gateway.serial.reader import SerialPortReader
from gateway.storage.base import StoreError

log = logging.getLogger(__name__)

STATUS = {
    FeedbackKind.RESPONDER_ASSIGNED: AckStatus.RESPONDER_ASSIGNED,
    FeedbackKind.RESOLVED: AckStatus.RESOLVED,
}


class SerialFeedback:
    """A ``FeedbackSender`` for source ``"serial"``."""

    def __init__(self, readers: Mapping[str, SerialPortReader], index: AddressIndex) -> None:
        self._readers = readers
        self._index = index

    async def send(self, feedback: Feedback) -> bool:
        if feedback.kind is FeedbackKind.ALERT_RECEIVED:
            # Already said: the reader writes 81/01 after the event is stored and delivered to
            # the bus, i.e. after the alert exists. A second 01 would only repeat it.
            return True
        if feedback.seq is None or not 0 <= feedback.seq <= 0xFFFF:
            log.info("no serial feedback for %s: no event SEQ to answer", feedback.device_id)
            return False
        where = self._index.address_of(feedback.device_id, SOURCE)
        if where is None:
            try:
                await self._index.load()  # registered a moment ago, perhaps
            except StoreError as exc:
                log.warning(
                    "serial feedback for %s: registry unavailable: %s", feedback.device_id, exc
                )
                return False
            where = self._index.address_of(feedback.device_id, SOURCE)
        if where is None:
            log.info("no serial feedback for %s: not on a serial port", feedback.device_id)
            return False
        port, addr = where.key
        reader = self._readers.get(port)
        if reader is None:
            log.info("no serial feedback for %s: port %s not configured", feedback.device_id, port)
            return False
        sent = reader.ack(int(addr, 16), feedback.seq, STATUS[feedback.kind])
        if not sent:
            log.warning("serial feedback for %s not sent: port %s closed", feedback.device_id, port)
        return sent
