"""An MQTT lane's messages into the intake: topic → codec → ``Intake.route``.

One router per lane (the native event lane, the native telemetry lane, zigbee2mqtt, …). It
decodes what arrived as soon as it arrived — so an alarm is found even behind thousands of
readings of the same lane — and hands each input over with its PUBACK as the
acknowledgement. Rejections are counted and acked at once (the broker must not resend them).
Every ``STEP_ASIDE_EVERY`` messages it lets the event path run.
"""

from __future__ import annotations

import logging

from alerts.replies import parse_reply, reply_topic_responder
from devices.codec import Rejected, RejectReason
from devices.codecs import TopicCodec
from gateway.intake.bulk_path import Room
from gateway.intake.intake import Intake
from gateway.intake.parcel import Ack
from gateway.intake.poison import PoisonGuard, Verdict
from gateway.metrics import Metrics
from gateway.mqtt.lane import Inbound, MqttLane
from gateway.rate_limit import DeviceRateLimiter

log = logging.getLogger(__name__)

# Messages decoded between two chances for the event path to run (~1–2 ms of work).
STEP_ASIDE_EVERY = 64
CHUNK = 512
SYS_DROPPED = "$SYS/broker/publish/messages/dropped"


class MqttAck:
    """PUBACK once durable; left unacked for a redelivery; current while its connection is."""

    __slots__ = ("_lane", "_message")

    def __init__(self, lane: MqttLane, message: Inbound) -> None:
        self._lane = lane
        self._message = message

    def done(self) -> None:
        self._lane.ack(self._message)

    def later(self) -> None:
        self._lane.skip([self._message])

    def current(self) -> bool:
        return self._lane.current(self._message)


class MqttRouter:
    def __init__(
        self,
        *,
        name: str,
        lane: MqttLane,
        codec: TopicCodec,
        intake: Intake,
        metrics: Metrics,
        room: Room = Room.WAIT,
        reply_prefix: str | None = None,
        limiter: DeviceRateLimiter | None = None,
        discard_floods: bool = False,
    ) -> None:
        self.name = name
        self._lane = lane
        self._codec = codec
        self._intake = intake
        self._metrics = metrics
        self._room = room
        self._reply_prefix = reply_prefix  # the event lane also carries responders' replies
        self._limiter = limiter
        self._discard_floods = discard_floods
        self._poison = PoisonGuard()

    async def run(self) -> None:
        lane = self._lane
        gate = self._intake.gate
        while True:
            batch = await lane.get_batch(CHUNK, 0.0)  # whatever is queued, at least one
            self._metrics.received.labels(lane=self.name).inc(len(batch))
            for position, message in enumerate(batch):
                if position % STEP_ASIDE_EVERY == STEP_ASIDE_EVERY - 1:
                    await gate.step_aside()  # a press that arrived meanwhile goes first
                try:
                    await self.route(message)
                except Exception:
                    if self._failed(message, batch[position + 1 :]):
                        raise  # retried first in line by the restarted task
                else:
                    self._poison.handled += 1
            self._metrics.queue_depth.labels(lane=self.name).set(lane.depth)

    def _failed(self, message: Inbound, rest: list[Inbound]) -> bool:
        """A bug while routing (see gateway/intake/poison.py). True: retry it (re-raise for
        the supervisor). The rest of the chunk goes back to the lane either way."""
        verdict = self._poison.failed(f"{message.topic}#{hash(message.payload)}")
        if verdict is Verdict.RETRY:
            self._lane.put_back([message, *rest])
            return True
        self._lane.put_back(rest)
        topic = message.topic[:128]
        if verdict is Verdict.SKIP:
            log.exception("routing keeps failing on %s; left for a redelivery", topic)
            self._lane.skip([message])
            return False
        log.exception("set aside poison message on %s: %r", topic, message.payload[:200])
        poison = Rejected(RejectReason.POISON, "routing failed")
        self._intake.reject(self.name, message.topic, poison)
        self._lane.ack(message)
        return False

    async def route(self, message: Inbound) -> None:
        topic = message.topic
        ack: Ack = MqttAck(self._lane, message)
        if topic.startswith("$SYS/"):
            self._broker_stat(message)
            ack.done()
            return
        prefix = self._reply_prefix
        if prefix is not None:
            responder_id = reply_topic_responder(topic, prefix)
            if responder_id is not None:
                try:
                    reply = parse_reply(responder_id, message.payload)
                except Rejected as rejection:
                    self._intake.reject(self.name, topic, rejection)
                    ack.done()
                    return
                self._intake.reply(
                    self.name, topic, reply, ack, received_mono=message.received_mono
                )
                return
        limiter = self._limiter
        if limiter is not None:
            device = topic.split("/", 2)[1] if topic.count("/") == 2 else topic
            # Over its rate, a device is flagged; its messages are kept unless discarding was
            # chosen.
            if not limiter.allow(device) and self._discard_floods:
                limited = Rejected(RejectReason.RATE_LIMITED, f"{device} over its rate limit")
                self._intake.reject(self.name, topic, limited)
                ack.done()
                return
        try:
            decoded = self._codec.decode(topic, message.payload, message.received_at)
        except Rejected as rejection:
            self._intake.reject(self.name, topic, rejection)
            ack.done()
            return
        if decoded is None:  # a bridge or command topic: not for us
            ack.done()
            return
        await self._intake.route(
            self.name,
            topic,
            decoded,
            ack,
            poison_key=f"{topic}#{hash(message.payload)}",
            received_mono=message.received_mono,
            room=self._room,
        )

    def _broker_stat(self, message: Inbound) -> None:
        if message.topic == SYS_DROPPED:
            try:
                self._metrics.broker_dropped.set(float(message.payload))
            except ValueError:
                log.debug("unparseable $SYS value on %s", message.topic)
