"""An MQTT publisher whose ``publish`` returns only when the broker has the message (PUBACK).

The alert path needs to know a notification reached the broker before it counts a channel as
delivered (else it must fall back), and device feedback needs the same. paho runs its network
loop in its own thread; PUBACKs cross to asyncio with ``call_soon_threadsafe``, so the event
loop never blocks and a PUBACK can never be seen before its waiter is registered (the waiter is
registered in the loop thread right after ``publish`` returns, before any callback can run).

MQTT v5 is used for its PUBACK reason codes: "not authorized" (an ACL) is a failure that v3.1.1
would hide behind a plain ack, and "no matching subscribers" tells the responder-app channel
that no phone will ever see the message. Reconnects are paho's, with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from gateway.mqtt.client import BrokerAddress, connect_async, new_client

log = logging.getLogger(__name__)

NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass(frozen=True, slots=True)
class PubAck:
    """What became of one publish. ``reason`` is for people (timeline, logs)."""

    ok: bool
    reason: str
    # The broker acked but said nobody subscribes (v5 reason 0x10): delivered to no one.
    no_subscribers: bool = False

    def __bool__(self) -> bool:
        return self.ok


class MqttPublisher:
    """Its own connection (clean start, no session), reconnecting; ``start`` does not wait for
    the broker, ``publish`` does (up to its timeout)."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        keepalive: int = 30,
        name: str = "publisher",
        max_inflight: int = 100,
        protocol: str = "5",
    ) -> None:
        self.name = name
        # "3.1.1" for brokers without v5 (the embedded demo broker); v5 adds the "no matching
        # subscribers" answer that lets the app channel fall back at once.
        self._v5 = protocol == "5"
        self.client_id = client_id or f"scgw-pub-{uuid.uuid4().hex[:12]}"
        self._address = BrokerAddress.parse(url)
        self._keepalive = keepalive
        self._max_inflight = max_inflight
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        # Touched only in the event-loop thread (paho callbacks hop over first).
        self._connected = asyncio.Event()
        self._pending: dict[int, asyncio.Future[PubAck]] = {}
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        if self._client is not None:
            return
        self._loop = asyncio.get_running_loop()
        client = new_client(self._address, self.client_id, v5=self._v5)
        client.max_inflight_messages_set(self._max_inflight)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        # Clean start: a notification nobody waits for any more must not be replayed from an
        # old session; what was in flight is failed on disconnect and the caller falls back.
        connect_async(
            client, self._address, keepalive=self._keepalive, v5=self._v5, clean_start=True
        )
        self._client = client
        # loop_start's thread retries the first connection too (the broker may start later).
        client.loop_start()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._set_connected(False, "stopped")

    async def __aenter__(self) -> MqttPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(
        self,
        timeout: float,  # noqa: ASYNC109 - a bounded wait that reports instead of raising
    ) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._connected.wait()
        except TimeoutError:
            return False
        return True

    # -- publishing -------------------------------------------------------------------------
    async def publish(
        self,
        topic: str,
        payload: bytes | str,
        qos: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the PUBACK deadline is part of the result
    ) -> bool:
        """True when the broker acknowledged the message (QoS 1: PUBACK) within ``timeout``;
        False when not connected by then, refused, or not acknowledged in time."""
        return (await self.publish_acked(topic, payload, qos=qos, timeout=timeout)).ok

    async def publish_acked(
        self,
        topic: str,
        payload: bytes | str,
        *,
        qos: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109 - the PUBACK deadline is part of the result
        retain: bool = False,
    ) -> PubAck:
        """Like ``publish``, with the broker's reason (never raises for broker trouble)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if self._client is None:
            return PubAck(False, "publisher not started")
        if not self._connected.is_set() and not await self.wait_connected(timeout):
            return PubAck(False, f"not connected to the broker within {timeout:g}s")
        client = self._client
        if client is None:
            return PubAck(False, "publisher stopped")
        try:
            info = client.publish(topic, payload, qos=qos, retain=retain)
        except ValueError as exc:  # a wildcard in the topic, a payload over 256 MB
            return PubAck(False, f"refused by the client: {exc}")
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return PubAck(False, f"not sent: {mqtt.error_string(info.rc)}")
        if qos == 0:
            ok = info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
            return PubAck(ok, "sent (QoS 0, no ack)" if ok else "not connected")
        # NO_CONN here means the connection dropped in between: paho keeps the message and
        # sends it after reconnecting, so the PUBACK may still come within the deadline.
        future: asyncio.Future[PubAck] = loop.create_future()
        self._pending[info.mid] = future
        try:
            remaining = max(deadline - loop.time(), 0.0)
            async with asyncio.timeout(remaining):
                return await future
        except TimeoutError:
            return PubAck(False, f"no PUBACK within {timeout:g}s")
        finally:
            self._pending.pop(info.mid, None)

    # -- loop-thread state changes ----------------------------------------------------------
    def _set_connected(self, up: bool, reason: str) -> None:
        if up:
            self._connected.set()
            return
        self._connected.clear()
        # A PUBACK for these cannot come on this connection; fail them now so callers fall
        # back at once instead of at their deadline. (paho resends them after a reconnect: a
        # duplicate notification is harmless, a link is single-use.)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_result(PubAck(False, f"connection lost before PUBACK ({reason})"))

    def _resolve(self, mid: int, reason: ReasonCode) -> None:
        future = self._pending.get(mid)
        if future is None or future.done():
            return  # a caller that already gave up, or a resend after a reconnect
        if reason.is_failure:
            future.set_result(PubAck(False, f"refused by the broker: {reason}"))
        elif reason.value == NO_MATCHING_SUBSCRIBERS:
            future.set_result(PubAck(True, str(reason), no_subscribers=True))
        else:
            future.set_result(PubAck(True, "acknowledged"))

    def _to_loop(self, fn: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        # RuntimeError: the loop is closed (shutdown), nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(fn, *args)

    # -- paho callbacks (paho's thread) -----------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused connection: {reason_code}"
            log.error("mqtt %s: %s", self.name, self.last_error)
            return
        self.last_error = None
        log.info("mqtt %s connected to %s:%d", self.name, self._address.host, self._address.port)
        self._to_loop(self._set_connected, True, "connected")

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._client is not None:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("mqtt %s %s; reconnecting", self.name, self.last_error)
        self._to_loop(self._set_connected, False, str(reason_code))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._to_loop(self._resolve, mid, reason_code)
