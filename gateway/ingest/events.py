"""The event lane: one message at a time, committed and acked before the next.

Events (a press, smoke, a fall) have their own connection, queue and task, so they never wait
behind a telemetry batch.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from gateway.ingest.common import PoisonGuard, RejectionLog
from gateway.ingest.fair import FairQueue
from gateway.metrics import Metrics
from gateway.mqtt.lane import Inbound, MqttLane
from gateway.priority import UrgentGate
from gateway.spool.durable import Durability
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
        durable: Durability | None = None,
        gate: UrgentGate | None = None,
    ) -> None:
        self._gate = gate
        self._poison = PoisonGuard()
        self._fair = FairQueue()  # per device, round robin: see gateway/ingest/fair.py
        self.busy = False  # a message taken from the lane is being handled (graceful stop)
        self._lane = lane
        self._store = store
        self._registry = registry
        self._metrics = metrics
        self._prefix = prefix
        self._max_bytes = max_payload_bytes
        self._bus = bus
        # Without a spool (tests, embedded uses) writes wait for the database as they always
        # did; the gateway passes the one that spools.
        self.durable = durable or Durability(
            store=store,
            spool=None,
            bus=bus,
            registry=registry,
            metrics=metrics,
            replies=replies,
        )
        self._reject = RejectionLog(metrics, LANE)

    async def run(self) -> None:
        queue = self._fair
        try:
            while True:
                if not queue:
                    queue.extend([await self._lane.get()])
                self.busy = True
                try:
                    # Telemetry steps aside until every queued event is stored and raised:
                    # held across a burst, so a flood does not switch it off and on per message.
                    with self._gate.urgent() if self._gate else contextlib.nullcontext():
                        while True:
                            queue.extend(self._lane.take_all())
                            message = queue.pop()
                            if message is None:
                                break
                            self._metrics.queue_depth.labels(lane=LANE).set(len(queue))
                            await self._handle_one(message)
                finally:
                    self.busy = False
        except asyncio.CancelledError:
            self._lane.put_back(queue.drain())  # shutdown: kept for the next start
            raise

    async def _handle_one(self, message: Inbound) -> None:
        try:
            await self.handle(message)
        except asyncio.CancelledError:
            self._fair.push_front(message)  # shutdown: handed back with the rest (run)
            raise
        except Exception:
            # A bug (see PoisonGuard): retried first in line by the restarted task; if it
            # keeps failing it is held back unacked (the broker resends it after a
            # reconnect) so the presses behind it still flow; set aside only once proven.
            verdict = self._poison.failed(PoisonGuard.key(message.topic, message.payload))
            if verdict == "retry":
                self._fair.push_front(message)  # first in line for the restarted task
                raise
            if verdict == "skip":
                log.exception(
                    "event on %s keeps failing; kept unacked for a redelivery",
                    message.topic[:128],
                )
                self._lane.skip([message])
                return
            log.exception(
                "set aside poison message on %s: %r", message.topic[:128], message.payload[:200]
            )
            self._reject(message.topic, Rejected(RejectReason.POISON, "handler failed"))
            self._ack(message)
        else:
            self._poison.handled += 1

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

        durable = self.durable
        known = await durable.known(LANE, event.device_id)
        if known is False:
            sighting = PendingSighting(
                event.device_id, event.ts, "event", event.payload, event.type
            )
            await durable.pending(LANE, [sighting])
            self._metrics.pending.inc()
            self._reject(message.topic, Rejected(RejectReason.UNKNOWN_DEVICE, event.device_id))
            self._ack(message)
            return

        # Stored and handed to the alert engine before the ack (a crash in between is
        # repaired by the redelivery) — or, the database away, spooled (fsynced) before it.
        # None: the registry could not be asked; the drain decides once the database is back.
        result = await durable.event(LANE, event, checked=known is True)
        self._ack(message)
        if result.spooled:
            return
        if not result.new:
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
        # Acted on before the ack, like events: a crash in between replays the reply, and
        # accepting an accepted alert again changes nothing. The database away: spooled.
        await self.durable.reply(LANE, reply)
        self._ack(message)

    def _ack(self, message: Inbound) -> None:
        self._lane.ack(message)
        self._metrics.ack_lag.labels(lane=LANE).observe(time.monotonic() - message.received_mono)
