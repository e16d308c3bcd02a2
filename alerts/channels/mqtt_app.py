"""The responder app channel (spec ``mqtt``): the notice as JSON on the responder's own topic.

``{prefix}/responders/{responder_id}/alerts``, QoS 1, not retained (a retained alert would pop
up again on every reconnect, long after it was handled). The app answers on
``{prefix}/responders/{responder_id}/reply``, or with a POST to the accept link it was given.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from alerts.channels.base import Delivery, JsonValue, Notice, Recipient

SPEC = "mqtt"
# A responder id goes into a topic level: MQTT wildcards or separators would address others.
_TOPIC_SAFE = re.compile(r"\A[^/+#\x00]{1,128}\Z")


@dataclass(frozen=True, slots=True)
class PubAck:
    """What became of one publish. ``reason`` is for people (timeline, logs)."""

    ok: bool
    reason: str
    # The broker acked but said nobody subscribes (v5 reason 0x10): delivered to no one.
    no_subscribers: bool = False

    def __bool__(self) -> bool:
        return self.ok


class Publisher(Protocol):
    """What the channel needs from an MQTT connection: True once the broker has the message
    (PUBACK for QoS 1) within ``timeout``. The gateway's ``MqttPublisher`` is one; the engine
    may hand in its own."""

    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the PUBACK deadline is part of the result
    ) -> bool: ...


@runtime_checkable
class AckingPublisher(Protocol):
    """A publisher that also tells why (the gateway's ``MqttPublisher``): lets the channel see
    that the broker acked a message no app subscribes to. Never raises for broker trouble."""

    async def publish_acked(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the PUBACK deadline is part of the result
        retain: bool = False,
    ) -> PubAck: ...


def alerts_topic(prefix: str, responder_id: str) -> str:
    return f"{prefix}/responders/{responder_id}/alerts"


def reply_topic(prefix: str, responder_id: str) -> str:
    return f"{prefix}/responders/{responder_id}/reply"


class MqttAppChannel:
    def __init__(
        self,
        publisher: Publisher,
        *,
        prefix: str = "scgw",
        timeout: float = 5.0,
        require_subscriber: bool = True,
    ) -> None:
        """``require_subscriber``: with a publisher that reports it (MQTT v5 PUBACK 0x10), a
        message no app subscribes to counts as not delivered, so the responder's next channel
        is tried now rather than after the step's ack timeout. An app with a persistent
        session that is offline still counts as subscribed (the broker keeps it)."""
        self._publisher = publisher
        self._prefix = prefix.rstrip("/")
        self._timeout = timeout
        self._require_subscriber = require_subscriber

    def handles(self, spec: str) -> bool:
        return spec.strip().lower() == SPEC

    def payload(self, recipient: Recipient, notice: Notice) -> bytes:
        """The JSON the app receives (``Notice.data`` plus where to reply)."""
        rid = recipient.responder_id or ""
        data: dict[str, JsonValue] = dict(notice.data)
        data.update(
            {
                "alert_id": notice.alert_id,
                "kind": notice.kind,
                "priority": notice.priority.value,
                "title": notice.message.title,
                "body": notice.message.body,
                "accept_url": notice.accept_url,
                "decline_url": notice.decline_url,
                "responder_id": rid,
                "reply_topic": reply_topic(self._prefix, rid),
            }
        )
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    async def send(self, spec: str, recipient: Recipient, notice: Notice) -> Delivery:
        rid = recipient.responder_id
        if rid is None or not _TOPIC_SAFE.match(rid):
            return Delivery(False, SPEC, "recipient has no app (no usable responder id)", 1, False)
        topic = alerts_topic(self._prefix, rid)
        body = self.payload(recipient, notice)
        publisher = self._publisher
        if isinstance(publisher, AckingPublisher):
            ack = await publisher.publish_acked(topic, body, qos=1, timeout=self._timeout)
            if ack.ok and ack.no_subscribers and self._require_subscriber:
                # Nobody will ever read it: not worth a retry, worth the next channel.
                return Delivery(False, SPEC, f"{topic}: no app subscribed", 1, False)
            return Delivery(ack.ok, SPEC, f"{topic}: {ack.reason}")
        ok = await publisher.publish(topic, body, 1, self._timeout)
        return Delivery(ok, SPEC, f"{topic}: {'acknowledged' if ok else 'not acknowledged'}")
