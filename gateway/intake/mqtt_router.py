"""An MQTT lane's messages into the intake: topic → codec → ``Intake.route``.

One router per lane (the native event lane, the native telemetry lane, zigbee2mqtt, …). It
decodes what arrived as soon as it arrived — so an alarm is found even behind thousands of
readings of the same lane — and hands each input over with its PUBACK as the
acknowledgement. Rejections are counted and acked at once (the broker must not resend them).
Every ``STEP_ASIDE_EVERY`` messages it lets the event path run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging

from alerts.replies import parse_reply, reply_topic_responder
from devices.codec import Rejected, RejectReason
from devices.codecs import RETAINED, Decoded, TopicCodec
from devices.models import Event, Telemetry
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


def replayed(decoded: Decoded, topic: str, payload: bytes) -> Decoded:
    """A retained event is a replay of old state, not a new press (SPEC, Intake): flagged so
    it is stored and raises nothing, and keyed by its content so every replay is one row."""
    key = hashlib.sha256(topic.encode() + b"\x00" + payload).hexdigest()[:24]
    messages = tuple(
        dataclasses.replace(
            m, replay=True, event_id=m.event_id if m.dedup_key else f"retained-{key}"
        )
        if type(m) is Event
        else m
        for m in decoded.messages
    )
    return dataclasses.replace(decoded, messages=messages, flags=(*decoded.flags, RETAINED))


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
        try:
            decoded = self._codec.decode(topic, message.payload, message.received_at)
        except Rejected as rejection:
            self._intake.reject(self.name, topic, rejection)
            ack.done()
            return
        if decoded is None:  # a bridge or command topic: not for us
            ack.done()
            return
        if message.retain and decoded.has_event:
            decoded = replayed(decoded, topic, message.payload)
        if self._limiter is not None and not self._within_rate(decoded) and self._discard_floods:
            # Opt-in only ([ingest] flood_action = "discard"): by default a flood is flagged
            # and kept (SPEC, "No silent discard by default").
            device = decoded.address.pending_id()
            limited = Rejected(RejectReason.RATE_LIMITED, f"{device} over its rate limit")
            self._intake.reject(self.name, topic, limited)
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

    def _within_rate(self, decoded: Decoded) -> bool:
        """Counts the message against its device's rate (flagging a flood), judged by the
        device's own time when it sent one (a backlog produced at a normal pace is none)."""
        assert self._limiter is not None
        first = decoded.messages[0] if decoded.messages else None
        at = None
        if type(first) is Telemetry and first.ts != first.received_at:
            at = first.ts.timestamp()
        return self._limiter.allow(decoded.address.pending_id(), at)

    def _broker_stat(self, message: Inbound) -> None:
        if message.topic == SYS_DROPPED:
            try:
                self._metrics.broker_dropped.set(float(message.payload))
            except ValueError:
                log.debug("unparseable $SYS value on %s", message.topic)
