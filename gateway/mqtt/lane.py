"""One MQTT connection ("lane") that hands messages to asyncio and acks only when told.

Why not a client library here: aiomqtt acks QoS 1 as soon as a message is queued in memory, so
a crash loses what is queued (FIELD_NOTES); a threaded client with ``manual_ack`` kept the promise
but on this project's 2-core target its network thread, per-message objects and v5 property parsing
capped a subscriber near 7k msg/s (profile in docs/benchmarks.md), half the ingest target. A
subscriber needs few packets (gateway/mqtt/wire.py), so this lane speaks them on an asyncio
protocol in the event loop itself: no thread hop, acks written in batches, one clock read per
received chunk. The publisher speaks the same packets (gateway/mqtt/publisher.py).

Promises kept from that client-library version:
- persistent session: clean start off, a session expiry (v5) / clean session off (3.1.1), a
  stable client id — whatever is unacked when the process dies is redelivered;
- PUBACK only when the consumer says the message is stored (in the order it says so: the
  telemetry lane acks in arrival order, the event lane per device — gateway/ingest/fair.py);
- an ack for a connection that has since dropped is never sent: its packet id may already name
  a different message on the new connection;
- ready only after SUBACK; reconnect with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from gateway.mqtt import wire
from gateway.mqtt.address import BrokerAddress
from gateway.reconnect import Backoff

__all__ = ["BrokerAddress", "Inbound", "MqttLane"]

log = logging.getLogger(__name__)
T = TypeVar("T")

CONNECT_TIMEOUT = 10.0
STOP_TIMEOUT = 2.0
REDELIVER_AFTER = 5.0  # skipped messages come back after a reconnect this long after a skip
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 10.0
# Receive buffer bound for 3.1.1 brokers (v5 has Receive Maximum): stop reading the socket
# while this many messages wait for the consumer; TCP then holds the broker back.
HIGH_WATER = 50_000
LOW_WATER = 10_000
MAX_PACKET = 16 * 1024 * 1024
_MICROSECOND = timedelta(microseconds=1)


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
    retain: bool = False  # a retained message the broker sent at subscribe time


class _Connection(asyncio.Protocol):
    """One TCP connection's bytes → packets. Lives in the event loop; no locking needed."""

    def __init__(self, lane: MqttLane, generation: int) -> None:
        self._lane = lane
        self.generation = generation
        self._buf = bytearray()
        self._acks = bytearray()
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._loop = loop
        self.connack: asyncio.Future[wire.ConnAck] = loop.create_future()
        self.suback: asyncio.Future[wire.SubAck] = loop.create_future()
        self.closed: asyncio.Future[str] = loop.create_future()
        self.last_received = time.monotonic()
        self.full = False  # the consumer is HIGH_WATER messages behind
        # Packet ids received and not yet acked on this connection: an id is acked at most
        # once, and only what is still unacked can be put back for another try.
        self.unacked: set[int] = set()
        self.held = lane.held  # urgent work elsewhere asked this lane to stop reading
        self._reading = True

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.apply_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.closed.done():
            self.closed.set_result(str(exc) if exc else "connection closed by the broker")

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        buf = self._buf
        buf += data
        lane = self._lane
        v5 = lane.v5
        items = lane.items
        # One clock read per chunk; each message after the first is stamped a microsecond
        # later, so readings without a device time that arrived together (a backlog) stay
        # distinct rows instead of collapsing on (device, metric, time).
        received_at = datetime.now(UTC)
        received_mono = self.last_received
        generation = self.generation
        offset = 0
        size = len(buf)
        woke = False
        try:
            while offset < size:
                header = wire.read_header(buf, offset)
                if header is None:
                    break
                first, start, length = header
                if length > MAX_PACKET:
                    raise wire.ProtocolError(f"packet of {length} bytes")
                end = start + length
                if end > size:
                    break
                kind = first >> 4
                if kind == wire.PacketType.PUBLISH:
                    packet = wire.parse_publish(first, buf, start, end, v5=v5)
                    if packet.qos:
                        self.unacked.add(packet.packet_id)
                    items.append(
                        Inbound(
                            # Decoded leniently: a topic that is not UTF-8 becomes a counted
                            # rejection downstream, not an exception here.
                            packet.topic.decode("utf-8", "replace"),
                            packet.payload,
                            packet.qos,
                            packet.packet_id,
                            generation,
                            received_at,
                            received_mono,
                            packet.dup,
                            packet.retain,
                        )
                    )
                    received_at += _MICROSECOND
                    woke = True
                else:
                    self._control(kind, first, bytes(buf[start:end]))
                offset = end
        except wire.ProtocolError as exc:
            log.error("mqtt lane %s: broker sent malformed data: %s", lane.name, exc)
            del buf[:]
            if self.transport is not None:
                self.transport.abort()
            return
        del buf[:offset]
        if woke:
            lane.wake()
            if len(items) >= HIGH_WATER and not self.full:
                self.full = True
                self.apply_reading()

    def _control(self, kind: int, first: int, body: bytes) -> None:
        v5 = self._lane.v5
        if kind == wire.PacketType.CONNACK:
            if not self.connack.done():
                self.connack.set_result(wire.parse_connack(body, v5=v5))
        elif kind == wire.PacketType.SUBACK:
            if not self.suback.done():
                self.suback.set_result(wire.parse_suback(body, v5=v5))
        elif kind == wire.PacketType.DISCONNECT:
            reason = body[0] if body else 0
            if not self.closed.done():
                self.closed.set_result(f"broker disconnected us (reason 0x{reason:02x})")
            if self.transport is not None:
                self.transport.close()
        elif kind == wire.PacketType.PINGRESP:
            pass  # last_received is the liveness signal
        else:
            # PUBREL & co. cannot come for QoS 1 subscriptions; AUTH is not used. Ignoring
            # beats dropping the connection, which would only bring the same bytes back.
            log.debug("mqtt lane %s: ignoring packet type %d", self._lane.name, kind)

    # -- writing ----------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def queue_ack(self, packet_id: int) -> None:
        self._acks += wire.encode_puback(packet_id)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Acks of one batch leave in one write (one syscall), still in order.
            self._loop.call_soon(self.flush_acks)

    def flush_acks(self) -> None:
        self._flush_scheduled = False
        if self._acks:
            data = bytes(self._acks)
            self._acks.clear()
            self.send(data)

    def disconnect(self) -> None:
        """Acks queued for this loop turn first, then a normal DISCONNECT, which keeps the
        session (unacked messages come back on the next connection). The broker closes the
        socket after reading it: closing first could send it an RST (if bytes were still
        unread on our side), and an RST makes the broker's kernel discard what it had not
        yet read — the last acks."""
        self.flush_acks()
        self.send(wire.encode_disconnect())

    def resume_if_drained(self, depth: int) -> None:
        if self.full and depth <= LOW_WATER:
            self.full = False
            self.apply_reading()

    def apply_reading(self) -> None:
        """Read the socket unless the consumer is far behind or the lane is held."""
        want = not (self.full or self.held)
        transport = self.transport
        if want == self._reading or transport is None or transport.is_closing():
            return
        self._reading = want
        if want:
            transport.resume_reading()
        else:
            transport.pause_reading()


class MqttLane:
    """A persistent-session subscriber with manual acknowledgement."""

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
        self.v5 = protocol == "5"
        self._on_connection_change = on_connection_change
        self.items: collections.deque[Inbound] = collections.deque()
        self._wake = asyncio.Event()
        self._generation = 0
        self._conn: _Connection | None = None
        self._connected = False
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None
        self.connects = 0
        self._stopping = False
        self.held = False
        self._redeliver: asyncio.TimerHandle | None = None
        self._backoff: Backoff | None = None
        self.skipped = 0

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self) -> None:
        # The lane supervises its own connection (reconnect with backoff is its whole job);
        # the reference is kept here and the task ends in stop().
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"mqtt-lane-{self.name}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._stopping = True
        if self._redeliver is not None:
            self._redeliver.cancel()
            self._redeliver = None
        conn = self._conn
        if conn is not None and conn.transport is not None:
            conn.disconnect()
            await asyncio.wait({conn.closed}, timeout=STOP_TIMEOUT)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_connected(False)

    @property
    def connected(self) -> bool:
        """Connected and subscribed."""
        return self._connected

    @property
    def depth(self) -> int:
        return len(self.items)

    # -- consuming --------------------------------------------------------------------------
    async def get(self) -> Inbound:
        while not self.items:
            self._wake.clear()
            await self._wake.wait()
        item = self.items.popleft()
        self._resume()
        return item

    def take_all(self) -> list[Inbound]:
        """Everything queued now (possibly nothing), in arrival order."""
        if not self.items:
            return []
        taken = list(self.items)
        self.items.clear()
        self._resume()
        return taken

    async def get_batch(self, max_items: int, max_delay: float) -> list[Inbound]:
        """Wait for one message, then gather more until ``max_items`` or ``max_delay``."""
        batch = [await self.get()]
        items = self.items
        deadline = time.monotonic() + max_delay
        while True:
            while items and len(batch) < max_items:
                batch.append(items.popleft())
            remaining = deadline - time.monotonic()
            if len(batch) >= max_items or remaining <= 0:
                break
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                break
        self._resume()
        return batch

    def wake(self) -> None:
        self._wake.set()

    def put_back(self, messages: list[Inbound]) -> int:
        """Return taken, unacked messages to the front of the queue, in order, after their
        consumer failed (its supervisor restarts it). Without this they would wait for the
        next reconnect — and hold Receive Maximum slots until then. Returns how many."""
        conn = self._conn
        keep = [
            m
            for m in messages
            if m.qos == 0
            or (conn is not None and m.generation == self._generation and m.mid in conn.unacked)
        ]
        self.items.extendleft(reversed(keep))
        if keep:
            self._wake.set()
        return len(keep)

    def skip(self, messages: list[Inbound]) -> None:
        """Leave messages unacked for now (their consumer keeps failing on them) and reconnect
        soon: the broker keeps them and sends them again on the new connection."""
        self.skipped += len(messages)
        if self._redeliver is None:
            loop = asyncio.get_running_loop()
            self._redeliver = loop.call_later(REDELIVER_AFTER, self._reconnect_to_redeliver)

    def _reconnect_to_redeliver(self) -> None:
        self._redeliver = None
        conn = self._conn
        if conn is None or conn.transport is None:
            return  # already reconnecting: the redelivery happens anyway
        log.warning("mqtt lane %s: reconnecting so the broker resends skipped messages", self.name)
        conn.disconnect()  # the broker closes; the connection loop then reconnects

    def hold(self, held: bool) -> None:
        """Stop (True) or resume (False) reading the socket; the broker keeps what is not
        read. Used to keep bulk telemetry out of the event loop while a press is handled."""
        self.held = held
        conn = self._conn
        if conn is not None:
            conn.held = held
            conn.apply_reading()

    def _resume(self) -> None:
        conn = self._conn
        if conn is not None and conn.full:
            conn.resume_if_drained(len(self.items))

    def current(self, message: Inbound) -> bool:
        """Still acknowledgeable: received on the current connection and not acked yet."""
        if message.qos == 0:
            return True
        conn = self._conn
        return (
            conn is not None
            and message.generation == self._generation
            and (message.mid in conn.unacked)
        )

    def ack(self, message: Inbound) -> bool:
        """PUBACK one stored message. False when its connection is gone (the broker will
        redeliver it, and the store absorbs the duplicate) or it was acked already."""
        if message.qos == 0:
            return True
        conn = self._conn
        # Not "connected" (subscribed) is fine: a resumed session's messages arrive between
        # CONNACK and SUBACK, on this very connection.
        if conn is None or message.generation != self._generation:
            return False
        try:
            conn.unacked.remove(message.mid)
        except KeyError:
            return False
        conn.queue_ack(message.mid)
        return True

    # -- the connection -----------------------------------------------------------------------
    async def _run(self) -> None:
        # The one reconnect policy (gateway/reconnect.py): jittered, so many gateways (or
        # lanes) that lost one broker do not all come back in the same instant; afresh after
        # a session that stayed up a while.
        backoff = Backoff(first=BACKOFF_FIRST, maximum=BACKOFF_MAX)
        self._backoff = backoff
        while True:
            delay = backoff.peek()
            try:
                await self._session()
            except (TimeoutError, wire.ProtocolError, _Refused) as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning(
                    "mqtt lane %s: %s; retrying in about %.1fs", self.name, self.last_error, delay
                )
            except OSError as exc:
                where = f"{self._address.host}:{self._address.port}"
                self.last_error = f"cannot reach broker {where}: {exc.strerror or exc}"
                log.warning(
                    "mqtt lane %s: %s; retrying in about %.1fs", self.name, self.last_error, delay
                )
            finally:
                self._drop()
            await backoff.wait()

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        address = self._address
        self._generation += 1
        generation = self._generation
        context = ssl.create_default_context() if address.tls else None
        # asyncio.timeout, not wait_for: on 3.11 wait_for can lose a cancellation that
        # arrives as the awaited call finishes, and a stop would then hang in a reconnect.
        async with asyncio.timeout(CONNECT_TIMEOUT):
            _transport, conn = await loop.create_connection(
                lambda: _Connection(self, generation),
                address.host,
                address.port,
                ssl=context,
                server_hostname=address.host if context else None,
            )
        self._conn = conn
        conn.send(
            wire.encode_connect(
                self.client_id,
                keepalive=self._keepalive,
                clean=False,
                v5=self.v5,
                username=address.username,
                password=address.password,
                session_expiry=self._session_expiry,
                receive_maximum=self._receive_maximum,
            )
        )
        connack = await self._await(conn, conn.connack, "CONNACK")
        if connack.code != 0:
            raise _Refused(
                f"broker refused connection: {wire.connack_refusal(connack.code, v5=self.v5)}"
            )
        conn.send(
            wire.encode_subscribe(
                1,
                self._subscriptions,
                qos=1,
                v5=self.v5,
                # Retained messages only on a new subscription, not on every reconnect of the
                # persistent session (a retained event is a replay of old state).
                retain_handling=1,
            )
        )
        suback = await self._await(conn, conn.suback, "SUBACK")
        refused = [code for code in suback.codes if code >= 0x80]
        if refused:
            # Not ready: the broker (its ACL, say) refused a subscription we need.
            raise _Refused(f"subscription refused (codes {refused})")
        self.connects += 1
        log.info(
            "mqtt lane %s connected to %s:%d as %s (session present: %s)",
            self.name,
            address.host,
            address.port,
            self.client_id,
            connack.session_present,
        )
        self.last_error = None
        # Ready only now: a message published before the broker knew our subscription would
        # not be kept for us (on the very first start, when no session exists yet).
        self._set_connected(True)
        if self._backoff is not None:
            self._backoff.opened()
        await self._keep_alive(conn)
        if not self._stopping:
            self.last_error = f"disconnected: {conn.closed.result()}"
            log.warning("mqtt lane %s %s; reconnecting", self.name, self.last_error)

    async def _await(self, conn: _Connection, step: asyncio.Future[T], what: str) -> T:
        done, _ = await asyncio.wait(
            (step, conn.closed), timeout=CONNECT_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if step in done:
            return step.result()
        if conn.closed in done:
            raise ConnectionError(f"connection closed before {what}: {conn.closed.result()}")
        raise TimeoutError(f"no {what} within {CONNECT_TIMEOUT:.0f}s")

    async def _keep_alive(self, conn: _Connection) -> None:
        """PINGREQ at ¾ of the keepalive; a broker silent for 1½ keepalives is gone (a cut
        network shows no FIN, so only silence tells)."""
        interval = max(1.0, self._keepalive * 0.75)
        while not conn.closed.done():
            # asyncio.wait leaves the future alone and cannot swallow our cancellation.
            done, _ = await asyncio.wait({conn.closed}, timeout=interval)
            if done:
                return
            if time.monotonic() - conn.last_received > self._keepalive * 1.5:
                if conn.transport is not None:
                    conn.transport.abort()
                await conn.closed
                return
            conn.send(wire.encode_pingreq())

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        self._generation += 1  # any ack still in flight for that connection is now stale
        if conn is not None and conn.transport is not None:
            conn.transport.abort()
        self._set_connected(False)

    def _set_connected(self, up: bool) -> None:
        changed = up != self._connected
        self._connected = up
        if changed and self._on_connection_change is not None:
            self._on_connection_change(self.name, up)


class _Refused(Exception):
    """The broker answered but said no (credentials, ACL): retried with backoff, and shown."""
