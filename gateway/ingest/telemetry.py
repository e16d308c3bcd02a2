"""The telemetry lane: batches of readings and statuses, one transaction, then in-order acks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from devices.codec import Rejected, RejectReason
from devices.health import HealthThrottle, health_of, merge
from devices.models import DeviceHealth, Event, PendingSighting, Reading, Status, Telemetry
from devices.mqtt_json import Kind, decode, parse_topic
from devices.registry import RegistryCache
from gateway.ingest.bus import EventBus
from gateway.ingest.common import PoisonGuard, RejectionLog
from gateway.metrics import Metrics
from gateway.mqtt.lane import Inbound, MqttLane
from gateway.priority import UrgentGate
from gateway.rate_limit import DeviceRateLimiter
from gateway.spool.durable import Durability
from gateway.storage.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A message whose device the registry could not be asked about (database away)."""

    message: Telemetry | Status


LANE = "telemetry"
# Messages decoded between two chances for the event path to run (~1–2 ms of work).
STEP_ASIDE_EVERY = 64
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


class TelemetryIngest:
    def __init__(
        self,
        *,
        lane: MqttLane,
        store: Store,
        registry: RegistryCache,
        metrics: Metrics,
        prefix: str,
        max_payload_bytes: int,
        batch_max_rows: int,
        batch_max_delay: float,
        limiter: DeviceRateLimiter,
        on_readings: Callable[[Sequence[Reading]], Awaitable[None]] | None = None,
        durable: Durability | None = None,
        gate: UrgentGate | None = None,
    ) -> None:
        self._lane = lane
        self._store = store
        self._registry = registry
        self._metrics = metrics
        self._prefix = prefix
        self._max_bytes = max_payload_bytes
        self._batch_max_rows = batch_max_rows
        self._batch_max_delay = batch_max_delay
        self._limiter = limiter
        self._on_readings = on_readings
        # The gateway passes the Durability that spools while the database is away (it
        # runs on_readings itself); without one, writes wait for the database as before.
        self._durable = durable or Durability(
            store=store,
            spool=None,
            bus=EventBus(metrics),
            registry=registry,
            metrics=metrics,
            on_readings=on_readings,
        )
        self._reject = RejectionLog(metrics, LANE)
        self._gate = gate
        self._poison = PoisonGuard()
        self.busy = False  # a batch taken from the lane is being handled (graceful stop)
        self._health = HealthThrottle()

    async def run(self) -> None:
        while True:
            batch = await self._lane.get_batch(self._batch_max_rows, self._batch_max_delay)
            self._metrics.queue_depth.labels(lane=LANE).set(self._lane.depth)
            self.busy = True
            try:
                await self.handle_batch(batch)
            except asyncio.CancelledError:
                self._lane.put_back(batch)  # shutdown: the next start (or broker) has them
                raise
            except Exception as exc:
                # A bug mid-batch (see PoisonGuard): what is not acked goes back to the front
                # for the restarted task, instead of waiting for a reconnect; a batch that
                # keeps failing is taken apart so that only what fails is held back.
                first = batch[0]
                if self._poison.failed(PoisonGuard.key(first.topic, first.payload)) == "retry":
                    self._lane.put_back(batch)
                    raise
                log.error("telemetry batch failed repeatedly (%s); one message at a time", exc)
                await self._one_by_one(batch)
            else:
                self._poison.handled += len(batch)
            finally:
                self.busy = False

    async def _one_by_one(self, batch: list[Inbound]) -> None:
        kept = 0
        for message in batch:
            try:
                await self.handle_batch([message])
            except Exception:  # logged with its traceback and counted: see PoisonGuard
                key = PoisonGuard.key(message.topic, message.payload)
                if self._poison.failed(key) == "poison":
                    log.exception(
                        "set aside poison message on %s: %r",
                        message.topic[:128],
                        message.payload[:200],
                    )
                    self._reject(message.topic, Rejected(RejectReason.POISON, "handler failed"))
                    self._lane.ack(message)
                else:
                    if not kept:  # one traceback per batch: a systemic fault fails them all
                        log.exception(
                            "handling failed on %s; kept unacked for a redelivery",
                            message.topic[:128],
                        )
                    kept += 1
                    self._lane.skip([message])
            else:
                self._poison.handled += 1
        if kept > 1:
            log.error("%d of %d messages kept unacked for a redelivery", kept, len(batch))

    async def handle_batch(self, batch: list[Inbound]) -> None:
        self._metrics.received.labels(lane=LANE).inc(len(batch))
        readings: list[Reading] = []
        health: dict[str, DeviceHealth] = {}
        pending: list[PendingSighting] = []
        unchecked: list[Telemetry | Status] = []
        stored_kinds = {"telemetry": 0, "status": 0}

        gate = self._gate
        for position, message in enumerate(batch):
            if gate is not None and position % STEP_ASIDE_EVERY == STEP_ASIDE_EVERY - 1:
                await gate.step_aside()  # a press that arrived meanwhile goes first
            if message.topic.startswith("$SYS/"):
                self._broker_stat(message)
                continue
            try:
                decoded = await self._decode(message)
            except Rejected as rejection:
                self._reject(message.topic, rejection)
                continue
            if isinstance(decoded, PendingSighting):
                pending.append(decoded)
                continue
            if isinstance(decoded, Unchecked):
                unchecked.append(decoded.message)
                continue
            if isinstance(decoded, Telemetry):
                readings.extend(decoded.readings)
                stored_kinds["telemetry"] += 1
            else:
                stored_kinds["status"] += 1
            seen = health_of(decoded)
            before = health.get(seen.device_id)
            health[seen.device_id] = seen if before is None else merge(before, seen)

        if gate is not None:
            await gate.step_aside()
        due = self._health.select(health.values())
        if readings or due or unchecked:
            # Committed (thresholds checked after), or spooled while the database is away;
            # waits, unacked, while the spool is full.
            result = await self._durable.readings(LANE, readings, due, unchecked)
            self._health.written(due)
            if result is not None:
                self._metrics.readings_stored.inc(result.readings_new)
                if result.readings_duplicate:
                    self._metrics.duplicates.labels(kind="reading").inc(result.readings_duplicate)
        if pending:
            await self._durable.pending(LANE, pending)
            self._metrics.pending.inc(len(pending))
        for kind, count in stored_kinds.items():
            if count:
                self._metrics.stored.labels(kind=kind).inc(count)
        self._metrics.batch_size.observe(len(batch))

        now = time.monotonic()
        for message in batch:  # in arrival order, all after the commit
            self._lane.ack(message)
            self._metrics.ack_lag.labels(lane=LANE).observe(now - message.received_mono)

    async def _decode(self, message: Inbound) -> Telemetry | Status | PendingSighting | Unchecked:
        topic = parse_topic(message.topic, self._prefix)
        if topic.kind is Kind.EVENT:
            raise Rejected(RejectReason.BAD_TOPIC, "event on the telemetry lane")
        if not self._limiter.allow(topic.device_id):
            raise Rejected(RejectReason.RATE_LIMITED, f"{topic.device_id} over its rate limit")
        decoded = decode(topic, message.payload, message.received_at, max_bytes=self._max_bytes)
        assert not isinstance(decoded, Event)
        known = self._registry.cached(topic.device_id)
        if known is None:
            known = await self._durable.known(LANE, topic.device_id)
            if known is None:  # the database is away: the drain asks the registry later
                return Unchecked(decoded)
        if not known:
            self._reject(message.topic, Rejected(RejectReason.UNKNOWN_DEVICE, topic.device_id))
            return PendingSighting(
                topic.device_id,
                decoded.ts,
                topic.kind.value,
                message.payload.decode("utf-8", "replace")[:4096],
            )
        return decoded

    def _broker_stat(self, message: Inbound) -> None:
        if message.topic == SYS_DROPPED:
            try:
                self._metrics.broker_dropped.set(float(message.payload))
            except ValueError:
                log.debug("unparseable $SYS value on %s", message.topic)
