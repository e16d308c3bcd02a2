"""Feedback to the resident's device: "received", "helper on the way", "resolved".

The alert engine says what to tell a device; the router sends it over the transport the device
used (MQTT ``cmd`` topic, the serial ``81`` ack, …).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

log = logging.getLogger(__name__)


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


class FeedbackSender(Protocol):
    async def send(self, feedback: Feedback) -> bool:
        """True when handed to the transport."""


class FeedbackRouter:
    def __init__(self) -> None:
        self._senders: dict[str, FeedbackSender] = {}

    def register(self, source: str, sender: FeedbackSender) -> None:
        self._senders[source] = sender

    async def send(self, feedback: Feedback) -> bool:
        sender = self._senders.get(feedback.source)
        if sender is None:
            log.info("no feedback path for %s devices (%s)", feedback.source, feedback.device_id)
            return False
        return await sender.send(feedback)
