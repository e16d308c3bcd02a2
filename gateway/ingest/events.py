"""The event lane: one message at a time, committed and acked before the next.

Events (a press, smoke, a fall) have their own connection, queue and task, so they never wait
behind a telemetry batch.
"""

from __future__ import annotations

import logging
import time
from typing import Protocol

from alerts.replies import Reply, parse_reply, reply_topic_responder
from devices.codec import Rejected, RejectReason
from devices.health import health_of
from devices.models import Event, PendingSighting
from devices.mqtt_json import Kind, decode, parse_topic
from devices.registry import RegistryCache
from gateway.ingest.bus import EventBus
from gateway.ingest.common import RejectionLog, write_durably
from gateway.metrics import Metrics
from gateway.mqtt.lane import Inbound, MqttLane
from gateway.storage.base import Store, StoreError

log = logging.getLogger(__name__)

LANE = "event"


class ReplyHandler(Protocol):
    async def handle_reply(self, reply: Reply) -> None:
        """Act on a responder app's reply (accept, decline, …); idempotent."""


class EventIngest:
    def __init__(
        self,
        *,
        lane: MqttLane,
        store: Store,
        registry: RegistryCache,
        metrics: Metrics,
        prefix: str,
        max_payload_bytes: int,
        bus: EventBus,
        replies: ReplyHandler | None = None,
    ) -> None:
        self._lane = lane
        self._store = store
        self._registry = registry
        self._metrics = metrics
        self._prefix = prefix
        self._max_bytes = max_payload_bytes
        self._bus = bus
        self.replies = replies
        self._reject = RejectionLog(metrics, LANE)

    async def run(self) -> None:
        while True:
            message = await self._lane.get()
            self._metrics.queue_depth.labels(lane=LANE).set(self._lane.depth)
            await self.handle(message)

    async def handle(self, message: Inbound) -> None:
        self._metrics.received.labels(lane=LANE).inc()
        responder_id = reply_topic_responder(message.topic, self._prefix)
        if responder_id is not None:
            await self._handle_reply(message, responder_id)
            return
        try:
            topic = parse_topic(message.topic, self._prefix)
            if topic.kind is not Kind.EVENT:
                raise Rejected(RejectReason.BAD_TOPIC, f"{topic.kind} on the event lane")
            event = decode(topic, message.payload, message.received_at, max_bytes=self._max_bytes)
            assert isinstance(event, Event)
        except Rejected as rejection:
            self._reject(message.topic, rejection)
            self._ack(message)
            return

        if not await write_durably(
            self._metrics, LANE, lambda: self._registry.is_known(event.device_id)
        ):
            sighting = PendingSighting(
                event.device_id, event.ts, "event", event.payload, event.type
            )
            await write_durably(self._metrics, LANE, lambda: self._store.record_pending([sighting]))
            self._metrics.pending.inc()
            self._reject(message.topic, Rejected(RejectReason.UNKNOWN_DEVICE, event.device_id))
            self._ack(message)
            return

        new = await write_durably(self._metrics, LANE, lambda: self._store.store_event(event))
        # Alerts are raised before the ack: a crash in between is repaired by the redelivery.
        await write_durably(
            self._metrics, LANE, lambda: self._bus.deliver(event, duplicate=not new)
        )
        self._ack(message)
        if not new:
            self._metrics.duplicates.labels(kind="event").inc()
            return
        self._metrics.stored.labels(kind="event").inc()
        try:
            await self._store.record_health([health_of(event)])
        except StoreError as exc:  # health is refreshed by the next message; the event is safe
            log.warning("device health of %s not updated: %s", event.device_id, exc)

    async def _handle_reply(self, message: Inbound, responder_id: str) -> None:
        try:
            reply = parse_reply(responder_id, message.payload)
        except Rejected as rejection:
            self._reject(message.topic, rejection)
            self._ack(message)
            return
        if self.replies is not None:
            # Acted on before the ack, like events: a crash in between replays the reply,
            # and accepting an accepted alert again changes nothing.
            await write_durably(self._metrics, LANE, lambda: self._handle(reply))
        self._ack(message)

    async def _handle(self, reply: Reply) -> None:
        assert self.replies is not None
        await self.replies.handle_reply(reply)

    def _ack(self, message: Inbound) -> None:
        self._lane.ack(message)
        self._metrics.ack_lag.labels(lane=LANE).observe(time.monotonic() - message.received_mono)
