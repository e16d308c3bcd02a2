"""One MQTT connection ("lane") that hands messages to asyncio and acks only when told.

Why paho directly: aiomqtt 2.5.1 acks QoS 1 as soon as a message is queued in memory, so a
crash loses what is queued (FIELD_NOTES). Here every message is PUBACKed by the consumer after
its durable write, in arrival order, over a persistent MQTT v5 session (clean_start=False and a
session expiry), so the broker redelivers anything not yet acked after a crash.

paho runs its network loop in its own thread; received messages cross to the event loop through
a deque and a wake-up that is only scheduled when the consumer may be waiting.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from gateway.mqtt.client import BrokerAddress, connect_async, new_client

__all__ = ["BrokerAddress", "Inbound", "MqttLane"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message as the broker delivered it, with what is needed to ack it later."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    generation: int
    received_at: datetime
    received_mono: float
    dup: bool = False


class MqttLane:
    """A persistent-session subscriber with manual, in-order acknowledgement."""

    def __init__(
        self,
        *,
        name: str,
        url: str,
        client_id: str,
        subscriptions: list[str],
        receive_maximum: int,
        session_expiry: float,
        keepalive: int = 30,
        protocol: str = "5",
        on_connection_change: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.name = name
        self.client_id = client_id
        self._address = BrokerAddress.parse(url)
        self._subscriptions = subscriptions
        self._receive_maximum = receive_maximum
        self._session_expiry = int(session_expiry)
        self._keepalive = keepalive
        self._v5 = protocol == "5"
        self._on_connection_change = on_connection_change
        self._items: collections.deque[Inbound] = collections.deque()
        self._wake = asyncio.Event()
        self._signalled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        # Guards the generation against a reconnect between "is this ack current?" and the
        # ack itself: a PUBACK carrying an old connection's packet id would ack a different
        # message on the new connection.
        self._ack_lock = threading.Lock()
        self._generation = 0
        self._connected = threading.Event()
        self._client: mqtt.Client | None = None
        self.last_error: str | None = None

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        client = new_client(
            self._address, self.client_id, v5=self._v5, persistent=True, manual_ack=True
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        # clean_start=False on every connect: paho's default (clean on the first connect of
        # each process) would wipe the session, and with it what a crash left unacked.
        connect_async(
            client,
            self._address,
            keepalive=self._keepalive,
            v5=self._v5,
            clean_start=False,
            session_expiry=self._session_expiry,
            receive_maximum=self._receive_maximum,
        )
        self._client = client
        client.loop_start()

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        # Unacked messages stay in the broker's session and come back on the next start.
        client.disconnect()
        await asyncio.to_thread(client.loop_stop)
        self._set_connected(False)

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._connected.is_set()

    @property
    def depth(self) -> int:
        return len(self._items)

    # -- consuming --------------------------------------------------------------------------
    async def get(self) -> Inbound:
        while not self._items:
            await self._sleep_until_woken()
        return self._items.popleft()

    async def get_batch(self, max_items: int, max_delay: float) -> list[Inbound]:
        """Wait for one message, then gather more until ``max_items`` or ``max_delay``."""
        first = await self.get()
        batch = [first]
        deadline = time.monotonic() + max_delay
        while len(batch) < max_items:
            while self._items and len(batch) < max_items:
                batch.append(self._items.popleft())
            remaining = deadline - time.monotonic()
            if len(batch) >= max_items or remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._sleep_until_woken(), remaining)
            except TimeoutError:
                break
        return batch

    async def _sleep_until_woken(self) -> None:
        self._wake.clear()
        self._signalled = False
        if self._items:
            return
        await self._wake.wait()

    def ack(self, message: Inbound) -> bool:
        """PUBACK one stored message. False when its connection is gone (the broker will
        redeliver it, and the store absorbs the duplicate)."""
        if message.qos == 0:
            return True
        with self._ack_lock:
            client = self._client
            if client is None or message.generation != self._generation:
                return False
            rc = client.ack(message.mid, message.qos)
        return rc == mqtt.MQTT_ERR_SUCCESS

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
            log.error("mqtt lane %s: %s", self.name, self.last_error)
            return
        self.last_error = None
        if self._v5:
            options = SubscribeOptions(qos=1)
            client.subscribe([(topic, options) for topic in self._subscriptions])
        else:
            client.subscribe([(topic, 1) for topic in self._subscriptions])
        log.info(
            "mqtt lane %s connected to %s:%d as %s (session present: %s)",
            self.name,
            self._address.host,
            self._address.port,
            self.client_id,
            flags.session_present,
        )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            # Not ready: the broker (its ACL, say) refused a subscription we need.
            self.last_error = f"subscription refused: {', '.join(refused)}"
            log.error("mqtt lane %s: %s", self.name, self.last_error)
            return
        # Ready only now: a message published before the broker knew our subscription would
        # not be kept for us (on the very first start, when no session exists yet).
        self._set_connected(True)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._ack_lock:
            self._generation += 1
        if self._client is not None:
            self.last_error = f"disconnected: {reason_code}"
            log.warning("mqtt lane %s %s; reconnecting", self.name, self.last_error)
        self._set_connected(False)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # The raw topic, decoded leniently: a topic that is not UTF-8 must become a counted
        # rejection downstream, not an exception that would end paho's network thread.
        topic = bytes(msg._topic).decode("utf-8", errors="replace")
        self._items.append(
            Inbound(
                topic=topic,
                payload=bytes(msg.payload),
                qos=msg.qos,
                mid=msg.mid,
                generation=self._generation,
                received_at=datetime.now(UTC),
                received_mono=time.monotonic(),
                dup=bool(msg.dup),
            )
        )
        if not self._signalled and self._loop is not None:
            self._signalled = True
            self._call_in_loop(self._wake.set)

    def _set_connected(self, up: bool) -> None:
        if up:
            self._connected.set()
        else:
            self._connected.clear()
        if self._on_connection_change is not None:
            self._call_in_loop(self._on_connection_change, self.name, up)

    def _call_in_loop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return  # shutting down: nothing is waiting any more
        loop.call_soon_threadsafe(fn, *args)
