"""One task per ``[[serial.ports]]`` line: a transport that reads frames and hands them to the
intake, with the ``81`` ack as their acknowledgement.

The port is a device path (``/dev/ttyUSB0``, a udev ``/dev/serial/by-id/...`` link), a
``socket://host:port`` serial server, or any other pyserial URL. When it disappears (USB
unplugged, the serial server restarted) the reader closes it, reports the state, and reopens
it with the shared backoff (gateway/reconnect.py); nothing else in the gateway notices.

Per frame: decode (``devices.serial_frame``) → ``Intake.route``: an event frame takes the
event path like any other source's event and is answered with ``81``/01 once it is durable —
a retransmitted event (same SEQ: the device missed our ack) is stored once and acked again;
telemetry and heartbeats take the bulk path and need no ack (beyond its bound they are
dropped and counted: a serial line cannot redeliver, and must keep reading its events).
Frames of unregistered addresses go to the pending list; their events are acked too, since
they are kept, and a device that is never answered would repeat itself on the bus forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import serial_asyncio_fast

from devices.codec import Rejected
from devices.codecs import Skipped
from devices.serial_frame import (
    AckFrame,
    AckStatus,
    EventFrame,
    Frame,
    FrameDecoder,
    decode_frame,
    encode_ack,
)
from gateway.intake.bulk_path import Room
from gateway.intake.intake import Intake
from gateway.intake.parcel import NO_ACK, Ack, CallbackAck
from gateway.metrics import Metrics
from gateway.reconnect import Backoff

log = logging.getLogger(__name__)

LANE = "serial"
READ_SIZE = 4096
# A frame is sent in one go; a line quiet this long mid-frame will not finish it (per port:
# ``[[serial.ports]] frame_gap``).
FRAME_GAP = 0.25
REOPEN_FIRST = 0.2
REOPEN_MAX = 10.0


@dataclass(slots=True)
class PortState:
    """What /readyz and the metrics show about one port."""

    name: str
    url: str
    open: bool = False
    last_error: str | None = None
    reopens: int = 0
    opened_at: datetime | None = None
    closed_at: datetime | None = None

    def as_dict(self) -> dict[str, object]:
        since = self.opened_at if self.open else self.closed_at
        return {
            "url": self.url,
            "open": self.open,
            "last_error": self.last_error,
            "reopens": self.reopens,
            "since": since.isoformat() if since is not None else None,
        }


class SerialPortReader:
    def __init__(
        self,
        *,
        name: str,
        url: str,
        baudrate: int,
        intake: Intake,
        metrics: Metrics,
        frame_gap: float = FRAME_GAP,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.name = name
        self.url = url
        self.baudrate = baudrate
        self.state = PortState(name, url)
        self._intake = intake
        self._metrics = metrics
        self._frame_gap = frame_gap
        self._clock = clock
        self._writer: asyncio.StreamWriter | None = None
        self._metrics.serial_open.labels(port=name).set(0)

    # -- the port's life ----------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff(first=REOPEN_FIRST, maximum=REOPEN_MAX)
        while True:
            try:
                reader, writer = await serial_asyncio_fast.open_serial_connection(
                    url=self.url, baudrate=self.baudrate
                )
            except (OSError, ValueError) as exc:  # SerialException is an OSError
                self._closed(f"cannot open: {exc}")
            else:
                problem = _unreadable(self.url, writer)
                if problem is not None:
                    writer.close()
                    self._closed(problem)
                    await asyncio.sleep(REOPEN_MAX)
                    continue
                self._opened(writer)
                backoff.opened()
                try:
                    await self._pump(reader)
                    self._closed("end of stream")
                except OSError as exc:
                    self._closed(f"lost: {exc}")
                finally:
                    self._writer = None
                    writer.close()
                    if self.state.open:  # an unexpected error (supervisor restarts us) or stop
                        self._mark_closed("reader stopped")
            await backoff.wait()

    def _opened(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.state.open = True
        self.state.opened_at = self._clock()
        self.state.last_error = None
        self._metrics.serial_open.labels(port=self.name).set(1)
        log.info("serial port %s (%s) open", self.name, self.url)

    def _closed(self, why: str) -> None:
        if self.state.open or self.state.last_error != why:
            log.warning("serial port %s (%s): %s; reopening with backoff", self.name, self.url, why)
        self._mark_closed(why)
        self.state.reopens += 1
        self._metrics.serial_reopens.labels(port=self.name).inc()

    def _mark_closed(self, why: str) -> None:
        self.state.open = False
        self.state.closed_at = self._clock()
        self.state.last_error = why
        self._metrics.serial_open.labels(port=self.name).set(0)

    async def _pump(self, reader: asyncio.StreamReader) -> None:
        decoder = FrameDecoder()
        while True:
            if decoder.pending:
                try:
                    data = await asyncio.wait_for(reader.read(READ_SIZE), self._frame_gap)
                except TimeoutError:
                    await self._consume(decoder.expire())
                    continue
            else:
                data = await reader.read(READ_SIZE)
            if not data:
                return
            await self._consume(decoder.feed(data))

    # -- frames -------------------------------------------------------------------------------
    async def _consume(self, items: list[Frame | Skipped]) -> None:
        for item in items:
            if isinstance(item, Skipped):
                self._skipped(item)
            else:
                await self.handle(item)

    def _skipped(self, item: Skipped) -> None:
        self._metrics.serial_skipped.labels(port=self.name, reason=item.reason).inc()
        self._metrics.serial_skipped_bytes.labels(port=self.name).inc(len(item.data))
        log.debug("serial %s: skipped %d bytes (%s)", self.name, len(item.data), item.reason)

    async def handle(self, frame: Frame) -> None:
        received_at = self._clock()
        kind = type(frame).__name__.removesuffix("Frame").lower()
        self._metrics.serial_frames.labels(port=self.name, type=kind).inc()
        self._metrics.received.labels(lane=LANE).inc()
        where = f"{self.name}/0x{frame.addr:08X}"
        if isinstance(frame, AckFrame):
            return  # a downlink frame: another master on the bus, or our own RS-485 echo
        try:
            decoded = decode_frame(self.name, frame, received_at)
        except Rejected as rejection:
            # Not acked: the frame was not accepted (an event code we do not know).
            self._intake.reject(LANE, where, rejection)
            return
        ack: Ack = NO_ACK
        if isinstance(frame, EventFrame):
            addr, seq = frame.addr, frame.seq
            # Written once the event is durable (stored, spooled, or kept as pending).
            ack = CallbackAck(lambda: self.ack(addr, seq, AckStatus.RECEIVED))
        await self._intake.route(
            LANE,
            where,
            decoded,
            ack,
            poison_key=f"{where}#{kind}#{frame.seq}",
            received_mono=time.monotonic(),
            room=Room.DROP,
        )

    def ack(self, addr: int, seq: int, status: AckStatus) -> bool:
        """Write an ``81`` frame for the device's ``seq``; False while the port is closed."""
        writer = self._writer
        if writer is None or writer.is_closing():
            return False
        # The 81 frame's own SEQ echoes the acknowledged one: devices match on either.
        writer.write(encode_ack(addr, seq, seq, status))
        self._metrics.serial_acks.labels(port=self.name, status=status.name.lower()).inc()
        return True


def _unreadable(url: str, writer: asyncio.StreamWriter) -> str | None:
    """Why asyncio cannot read this port, or None. pyserial URL handlers without a file
    descriptor (``rfc2217://``, ``loop://``) open fine but would never deliver a byte."""
    if url.startswith("socket://"):
        return None  # a plain asyncio socket transport
    port = writer.transport.get_extra_info("serial")
    try:
        port.fileno()
    except (OSError, AttributeError):  # io.UnsupportedOperation is an OSError
        scheme = url.partition("://")[0] if "://" in url else url
        return f"{scheme}:// has no file descriptor to read from; use a device path or socket://"
    return None
