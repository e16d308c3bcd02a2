"""The zigbee2mqtt pipeline (and any other ``TopicCodec`` dialect) on its own MQTT lane.

Zigbee smoke, gas and water alarms are life-safety events, so the lane has its own broker
connection and never waits behind native telemetry. Messages are taken as they come (no
batching delay); each event is stored and handed to the bus as soon as it is decoded, readings
and statuses of what arrived together share one transaction, and the whole group is acked to
the broker only after everything in it is durable.
"""

from __future__ import annotations

import logging
import time

from devices.codec import Rejected, RejectReason
from devices.codecs import TopicCodec
from devices.index import AddressIndex
from devices.models import Event, PendingSighting, Status, Telemetry
from gateway.ingest.sink import DeviceSink, Unchecked
from gateway.metrics import Metrics
from gateway.mqtt.lane import Inbound, MqttLane

log = logging.getLogger(__name__)


class TopicCodecIngest:
    def __init__(
        self,
        *,
        codec: TopicCodec,
        lane: MqttLane,
        sink: DeviceSink,
        index: AddressIndex,
        metrics: Metrics,
        batch_max: int = 500,
    ) -> None:
        self._codec = codec
        self._lane = lane
        self._sink = sink
        self._index = index
        self._metrics = metrics
        self._batch_max = batch_max
        self.name = codec.name

    async def run(self) -> None:
        while True:
            # No gathering delay: whatever is queued now, at least one message.
            batch = await self._lane.get_batch(self._batch_max, 0.0)
            self._metrics.queue_depth.labels(lane=self.name).set(self._lane.depth)
            await self.handle_batch(batch)

    async def handle_batch(self, batch: list[Inbound]) -> None:
        self._metrics.received.labels(lane=self.name).inc(len(batch))
        readings: list[Telemetry | Status] = []
        pending: list[PendingSighting] = []
        for message in batch:
            try:
                decoded = self._codec.decode(message.topic, message.payload, message.received_at)
            except Rejected as rejection:
                self._sink.reject(message.topic, rejection)
                continue
            if decoded is None:
                continue  # bridge and command topics
            for problem in decoded.problems:
                self._sink.problem(message.topic, Rejected(RejectReason.INVALID_PAYLOAD, problem))
            # A known device keeps flowing during a database outage; an address that cannot be
            # looked up then is spooled as it is and sorted out by the drain.
            device_id = await self._sink.resolve(self._index, decoded.address)
            if isinstance(device_id, Unchecked):
                await self._sink.unchecked(decoded)
                continue
            if device_id is None:
                pending.extend(decoded.sightings())
                self._sink.reject(
                    message.topic, Rejected(RejectReason.UNKNOWN_DEVICE, "not in the registry")
                )
                continue
            for item in decoded.bind(device_id):
                if isinstance(item, Event):
                    await self._sink.event(item)
                else:
                    readings.append(item)
        await self._sink.readings(readings)
        await self._sink.pending(pending)
        now = time.monotonic()
        for message in batch:  # in arrival order, all after the writes
            self._lane.ack(message)
            self._metrics.ack_lag.labels(lane=self.name).observe(now - message.received_mono)
