"""An MQTT publisher whose ``publish_acked`` returns only when the broker has the message
(PUBACK) or its deadline has passed — on the gateway's own asyncio protocol (the packets of
gateway/mqtt/wire.py, like the ingest lanes): no client library, no thread.

Why the PUBACK matters: the alert path counts a channel as delivered only once the broker has
the notice (else it falls back to the next channel), and device feedback the same. MQTT v5 for
its PUBACK reason codes: "not authorised" (an ACL) is a failure that 3.1.1 hides behind a plain
ack, and "no matching subscribers" tells the responder-app channel that no phone will ever see
the message. 3.1.1 is for brokers without v5 (the embedded demo broker, amqtt).

Promises:
- its own connection, clean start, no session: a notification nobody waits for any more is
  never replayed from an old session. What is in flight when the connection drops fails at
  once (its caller falls back or retries); it is not resent after the reconnect;
- never raises for broker trouble and never blocks the event loop. A publish waits, up to its
  deadline, for the connection, for a slot under the broker's Receive Maximum (v5 CONNACK) and
  for the socket to take more bytes (a broker that stops reading pauses the transport's
  writes; nothing more is queued behind it), then for its PUBACK;
- reconnects with the shared policy (gateway/reconnect.py); a broker silent for 1½ keepalives
  is taken as gone (a cut network shows no FIN).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
import uuid
from typing import Literal

from alerts.channels.mqtt_app import PubAck
from gateway.mqtt import wire
from gateway.mqtt.address import BrokerAddress
from gateway.reconnect import Backoff

__all__ = ["MqttPublisher"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
# A publisher subscribes to nothing: what the broker sends are small control packets. A
# bigger length is garbage, not something to buffer.
MAX_INBOUND_PACKET = 64 * 1024

_Admission = tuple["_Connection", int]  # a connection and the packet id reserved on it


class _NotConnected(Exception):
    """The broker answered but no usable connection came of it: refused, closed or silent
    before CONNACK. Retried with backoff, and shown."""


class _Connection(asyncio.Protocol):
    """One TCP connection: packets in, PUBLISH out, and the packet ids awaiting PUBACK on it.
    Lives in the event loop; no locking needed."""

    def __init__(self, publisher: MqttPublisher) -> None:
        loop = asyncio.get_running_loop()
        self._publisher = publisher
        self._v5 = publisher.v5
        self._buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[wire.ConnAck] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.last_received = time.monotonic()
        self.writable = True  # False while the transport's write buffer is over its high mark
        # From CONNACK (accept()).
        self.limit = 1
        self.max_packet: int | None = None
        self.maximum_qos = 2
        self.retain_available = True
        # Packet ids the broker still counts against its Receive Maximum, each with the caller
        # waiting for its PUBACK (None: reserved, not yet sent; a done future: the caller gave
        # up, the id stays taken until the PUBACK or the end of the connection).
        self.inflight: dict[int, asyncio.Future[PubAck] | None] = {}
        self._last_id = 0

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "connection closed by the broker")
        self.fail_inflight(f"connection lost before PUBACK ({self.closed.result()})")
        self._publisher._lost(self)

    def pause_writing(self) -> None:
        self.writable = False

    def resume_writing(self) -> None:
        self.writable = True
        self._publisher._admit_waiting()

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        buf = self._buf
        buf += data
        offset = 0
        try:
            while True:
                header = wire.read_header(buf, offset)
                if header is None:
                    break
                first, start, length = header
                if length > MAX_INBOUND_PACKET:
                    raise wire.ProtocolError(f"packet of {length} bytes")
                end = start + length
                if end > len(buf):
                    break
                self._packet(first >> 4, bytes(buf[start:end]))
                offset = end
        except wire.ProtocolError as exc:
            log.error("mqtt %s: broker sent malformed data: %s", self._publisher.name, exc)
            del buf[:]
            self.abort(f"malformed data from the broker: {exc}")
            return
        del buf[:offset]

    def _packet(self, kind: int, body: bytes) -> None:
        if kind == wire.PacketType.PUBACK:
            self._acked(wire.parse_puback(body, v5=self._v5))
        elif kind == wire.PacketType.CONNACK:
            if not self.connack.done():
                self.connack.set_result(wire.parse_connack(body, v5=self._v5))
        elif kind == wire.PacketType.PINGRESP:
            pass  # last_received is the liveness signal
        elif kind == wire.PacketType.DISCONNECT:
            reason = wire.reason_text(body[0] if body else 0)
            if not self.closed.done():
                self.closed.set_result(f"broker disconnected us: {reason}")
            if self.transport is not None:
                self.transport.close()
        else:
            # A PUBLISH cannot come (no subscriptions, no session); AUTH is not used. Ignoring
            # beats dropping the connection, which would only bring the same bytes back.
            log.debug("mqtt %s: ignoring packet type %d", self._publisher.name, kind)

    def _acked(self, ack: wire.PubAck) -> None:
        try:
            waiter = self.inflight.pop(ack.packet_id)
        except KeyError:
            log.debug(
                "mqtt %s: PUBACK for id %d not in flight", self._publisher.name, ack.packet_id
            )
            return
        if waiter is not None and not waiter.done():
            waiter.set_result(_outcome(ack.reason))
        self._publisher._admit_waiting()

    # -- state ------------------------------------------------------------------------------
    def accept(self, connack: wire.ConnAck, max_inflight: int) -> None:
        self.limit = max(1, min(max_inflight, connack.receive_maximum))
        self.max_packet = connack.maximum_packet_size
        self.maximum_qos = connack.maximum_qos
        self.retain_available = connack.retain_available

    def has_room(self) -> bool:
        """Another PUBLISH may go out now."""
        transport = self.transport
        return (
            self.writable
            and len(self.inflight) < self.limit
            and transport is not None
            and not transport.is_closing()
        )

    def reserve(self) -> int:
        """A packet id no message in flight on this connection uses (at most ``limit`` are,
        so one is free)."""
        packet_id = self._last_id
        while True:
            packet_id = packet_id % 0xFFFF + 1
            if packet_id not in self.inflight:
                break
        self._last_id = packet_id
        self.inflight[packet_id] = None
        return packet_id

    def release(self, packet_id: int) -> None:
        """A reserved id that was never sent."""
        if self.inflight.get(packet_id, False) is None:
            del self.inflight[packet_id]

    def refusal(self, size: int, qos: int, retain: bool) -> str | None:
        """Why the broker would not take this publish, by what it announced in CONNACK (it
        would drop the connection, and everything in flight with it)."""
        if self.max_packet is not None and size > self.max_packet:
            return f"{size} bytes is over the broker's maximum packet size ({self.max_packet})"
        if qos > self.maximum_qos:
            return f"the broker accepts at most QoS {self.maximum_qos}"
        if retain and not self.retain_available:
            return "the broker does not keep retained messages"
        return None

    def fail_inflight(self, reason: str) -> None:
        inflight, self.inflight = self.inflight, {}
        for waiter in inflight.values():
            if waiter is not None and not waiter.done():
                waiter.set_result(PubAck(False, reason))

    def send(self, data: bytes) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    def abort(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        if self.transport is not None:
            self.transport.abort()


def _outcome(reason: int) -> PubAck:
    if reason >= 0x80:
        return PubAck(False, f"refused by the broker: {wire.reason_text(reason)}")
    if reason == wire.NO_MATCHING_SUBSCRIBERS:
        return PubAck(True, wire.reason_text(reason), no_subscribers=True)
    return PubAck(True, "acknowledged")


class MqttPublisher:
    """QoS 1 publishes that report the broker's answer. ``run()`` holds the connection
    (reconnecting) until cancelled — the gateway supervises it, then calls ``stop()``;
    ``start()``/``stop()`` run it on a task of the publisher's own (tests, tools). A publish
    waits for the connection up to its own timeout."""

    def __init__(
        self,
        url: str,
        *,
        client_id: str | None = None,
        keepalive: int = 30,
        name: str = "publisher",
        max_inflight: int = 100,
        protocol: Literal["5", "3.1.1"] = "5",
    ) -> None:
        self.name = name
        # "3.1.1" for brokers without v5 (the embedded demo broker); v5 adds the reason codes.
        self.v5 = protocol == "5"
        self.client_id = client_id or f"scgw-pub-{uuid.uuid4().hex[:12]}"
        self._address = BrokerAddress.parse(url)
        self._keepalive = keepalive
        self._max_inflight = max_inflight
        self._conn: _Connection | None = None  # connected: CONNACK accepted
        self._opening: _Connection | None = None  # the current socket, from TCP connect on
        self._connected = asyncio.Event()
        # Publishes waiting for room (connection, Receive Maximum slot, writable socket), in
        # order; each gets a reserved packet id, or None when the publisher stops.
        self._waiters: collections.deque[asyncio.Future[_Admission | None]] = collections.deque()
        # Until stop(): a publish made before run() has connected waits for it (its timeout).
        self._stopped = False
        self._running = False
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.connects = 0

    # -- lifecycle --------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, keep the connection, reconnect with backoff; until cancelled. Raises only
        for a fault in this code (its supervisor restarts it)."""
        if self._running:
            raise RuntimeError(f"mqtt publisher {self.name} is already running")
        self._running = True
        self._stopped = False
        backoff = Backoff()
        address = self._address
        try:
            while True:
                error: str | None = None
                try:
                    await self._session(backoff)
                except (TimeoutError, _NotConnected) as exc:
                    error = str(exc) or type(exc).__name__
                except OSError as exc:
                    where = f"{address.host}:{address.port}"
                    error = f"cannot reach broker {where}: {exc.strerror or exc}"
                # (Cancelled: the outer finally ends the connection with a DISCONNECT.)
                self._drop(graceful=False)
                delay = backoff.next_delay()
                if error is not None:
                    self.last_error = error
                    log.warning("mqtt %s: %s; retrying in %.1fs", self.name, error, delay)
                await asyncio.sleep(delay)
        finally:
            self._running = False
            self._drop(graceful=True)

    async def start(self) -> None:
        """Run on a task of this publisher's own (tests, tools); ``stop()`` ends it."""
        if self._task is not None:
            return
        self._stopped = False
        self._task = asyncio.create_task(self.run(), name=f"mqtt-publisher-{self.name}")
        self._task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.last_error = f"publisher failed: {type(exc).__name__}: {exc}"
            log.error("mqtt %s: connection task failed", self.name, exc_info=exc)

    async def stop(self) -> None:
        """Disconnect; publishes waiting or in flight fail now ("publisher stopped")."""
        self._stopped = True
        task, self._task = self._task, None
        conn = self._opening
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # a failure of its own was logged by _task_ended
        self._drop(graceful=True)
        waiters, self._waiters = self._waiters, collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
        if conn is not None:
            # The DISCONNECT is flushed before the socket closes; a broker that reads nothing
            # more does not hold the stop up for long.
            await asyncio.wait([conn.closed], timeout=STOP_TIMEOUT)
            if conn.transport is not None:
                conn.transport.abort()

    async def __aenter__(self) -> MqttPublisher:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def connected(self) -> bool:
        return self._conn is not None

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
        """Like ``publish``, with the broker's reason (never raises for broker trouble). QoS 0
        reports ok once written to the socket."""
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        try:
            wire.check_topic_name(topic)
            if qos not in (0, 1):
                raise ValueError(f"QoS {qos} is not supported (0 or 1)")
        except ValueError as exc:
            return PubAck(False, f"refused by the client: {exc}")
        if self._stopped:
            return PubAck(False, "publisher stopped")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                admission = await self._admission(deadline)
            except TimeoutError:
                return PubAck(False, self._why_waiting(timeout))
            if admission is None:
                return PubAck(False, "publisher stopped")
            conn, packet_id = admission
            if conn is self._conn:
                break
            # The connection dropped between the admission and now: nothing was sent, so
            # this publish may wait for the next one (within its deadline).
        try:
            packet = wire.encode_publish(
                topic, data, qos=qos, packet_id=packet_id, v5=self.v5, retain=retain
            )
        except ValueError as exc:  # a payload past MQTT's 256 MB
            refusal: str | None = str(exc)
        else:
            refusal = conn.refusal(len(packet), qos, retain)
        if refusal is not None:
            conn.release(packet_id)
            self._admit_waiting()
            return PubAck(False, f"refused by the client: {refusal}")
        if qos == 0:
            conn.release(packet_id)
            conn.send(packet)
            self._admit_waiting()
            return PubAck(True, "sent (QoS 0, no ack)")
        acked: asyncio.Future[PubAck] = loop.create_future()
        conn.inflight[packet_id] = acked
        conn.send(packet)
        try:
            async with asyncio.timeout_at(deadline):
                return await acked
        except TimeoutError:
            # The id stays taken until its PUBACK or the end of the connection: the broker
            # still counts it against its Receive Maximum.
            return PubAck(False, f"no PUBACK within {timeout:g}s")

    async def _admission(self, deadline: float) -> _Admission | None:
        """A packet id reserved on a connection with room, in arrival order; None when the
        publisher stops. TimeoutError at ``deadline``."""
        conn = self._conn
        if not self._waiters and conn is not None and conn.has_room():
            return conn, conn.reserve()
        waiter: asyncio.Future[_Admission | None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout_at(deadline):
                return await waiter
        except BaseException:
            # Given up (deadline, cancelled). An id reserved for it in the meantime goes back.
            if waiter.done() and not waiter.cancelled():
                admission = waiter.result()
                if admission is not None:
                    admission[0].release(admission[1])
                    self._admit_waiting()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def _admit_waiting(self) -> None:
        """Hand free room to the publishes waiting for it, first come first served."""
        conn = self._conn
        waiters = self._waiters
        while waiters and conn is not None and conn.has_room():
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result((conn, conn.reserve()))

    def _why_waiting(self, timeout: float) -> str:
        conn = self._conn
        if conn is None:
            why = f" ({self.last_error})" if self.last_error else ""
            return f"not connected to the broker within {timeout:g}s{why}"
        if not conn.writable:
            return f"the broker read nothing more for {timeout:g}s (send buffer full)"
        return f"no room within {timeout:g}s: {len(conn.inflight)} publishes await PUBACK"

    # -- the connection -----------------------------------------------------------------------
    async def _session(self, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        address = self._address
        context = ssl.create_default_context() if address.tls else None
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as its awaitable completes, and this loop must stop when cancelled.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _transport, conn = await loop.create_connection(
                lambda: _Connection(self),
                address.host,
                address.port,
                ssl=context,
                server_hostname=address.host if context else None,
            )
        self._opening = conn
        # Clean start and (v5) no session expiry: the broker keeps nothing for this client id.
        conn.send(
            wire.encode_connect(
                self.client_id,
                keepalive=self._keepalive,
                clean=True,
                v5=self.v5,
                username=address.username,
                password=address.password,
            )
        )
        done, _ = await asyncio.wait(
            (conn.connack, conn.closed),
            timeout=CONNECT_TIMEOUT,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if conn.connack not in done:
            if conn.closed in done:
                raise _NotConnected(f"connection closed before CONNACK: {conn.closed.result()}")
            raise _NotConnected(f"no CONNACK within {CONNECT_TIMEOUT:g}s")
        connack = conn.connack.result()
        if connack.code != 0:
            refusal = wire.connack_refusal(connack.code, v5=self.v5)
            raise _NotConnected(f"broker refused connection: {refusal}")
        conn.accept(connack, self._max_inflight)
        self._conn = conn
        self._connected.set()
        self.connects += 1
        self.last_error = None
        backoff.opened()
        log.info(
            "mqtt %s connected to %s:%d as %s",
            self.name,
            address.host,
            address.port,
            self.client_id,
        )
        self._admit_waiting()
        keepalive = (
            self._keepalive if connack.server_keep_alive is None else connack.server_keep_alive
        )
        await self._keep_alive(conn, keepalive)
        self.last_error = f"disconnected: {conn.closed.result()}"
        log.warning("mqtt %s %s; reconnecting", self.name, self.last_error)

    async def _keep_alive(self, conn: _Connection, keepalive: int) -> None:
        """PINGREQ at ¾ of the keepalive; a broker silent for 1½ keepalives is gone."""
        if keepalive <= 0:
            await conn.closed
            return
        interval = max(1.0, keepalive * 0.75)
        while not conn.closed.done():
            await asyncio.wait([conn.closed], timeout=interval)  # (see _session on wait_for)
            if conn.closed.done():
                return
            if time.monotonic() - conn.last_received > keepalive * 1.5:
                conn.abort(f"no answer from the broker for {keepalive * 1.5:g}s")
                return
            conn.send(wire.encode_pingreq())

    def _lost(self, conn: _Connection) -> None:
        if self._conn is conn:
            self._conn = None
            self._connected.clear()

    def _drop(self, *, graceful: bool) -> None:
        """End the current connection: with a DISCONNECT (stopping) or at once (it failed)."""
        conn, self._opening = self._opening, None
        if conn is None:
            return
        self._lost(conn)
        if conn.closed.done():
            reason = conn.closed.result()
        else:
            reason = "publisher stopped" if graceful else "connection dropped"
        conn.fail_inflight(f"connection lost before PUBACK ({reason})")
        transport = conn.transport
        if transport is None:
            return
        if graceful and conn.writable and not transport.is_closing():
            conn.send(wire.encode_disconnect())
            transport.close()  # after what is buffered, the DISCONNECT last
        else:
            conn.abort(reason)
