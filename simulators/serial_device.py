"""Virtual serial devices: one-button callers behind an RS-485 concentrator, on a pseudo
terminal (``--pty``, the default) or a TCP serial server (``--listen HOST:PORT``, which the
gateway reaches as ``socket://HOST:PORT``).

Each device sends heartbeats and telemetry frames of the SPEC serial format; a press sends an
event frame and repeats it (same SEQ) until the gateway's ``81`` ack for it comes back — the
ack is read through the same CRC-checking decoder the gateway uses. Feedback acks (status 02
responder assigned, 03 resolved) are recorded per device.

``PtyLine`` and ``TcpLine`` are the two ends a test can also drive byte by byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from devices.codecs import Skipped
from devices.models import EventType
from devices.serial_frame import (
    CODE_OF_EVENT,
    AckFrame,
    AckStatus,
    EventFrame,
    FrameDecoder,
    HeartbeatFrame,
    TelemetryFrame,
    encode,
)

log = logging.getLogger(__name__)


class Line(Protocol):
    """One end of a serial line as a device sees it."""

    def write(self, data: bytes) -> None: ...

    async def read(self) -> bytes:
        """Some bytes from the gateway; b"" when the line is gone."""

    def close(self) -> None: ...


class PtyLine:
    """A pseudo-terminal pair: the gateway opens ``path`` (or ``link``), we hold the master.

    The slave end is kept open here too, so the master reads no EIO before the gateway opens
    it; ``link`` is a symlink to the slave, standing for a stable udev name
    (``/dev/serial/by-id/...``) that survives unplugging and plugging the device back.
    """

    def __init__(self, link: Path | None = None) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/LF translation: bytes pass unchanged
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link = link
        if link is not None:
            with contextlib.suppress(FileNotFoundError):
                link.unlink()
            link.symlink_to(self.path)
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._master, self._readable)
        self._closed = False

    @property
    def url(self) -> str:
        return str(self.link) if self.link is not None else self.path

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave open any more
            data = b""
        if data:
            self._queue.put_nowait(data)

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._master, view)
            except BlockingIOError:
                return  # the gateway is not reading: bytes are lost, as on a real line
            view = view[written:]

    async def read(self) -> bytes:
        return await self._queue.get()

    def close(self) -> None:
        """Unplug: both ends closed, the link removed (the path vanishes)."""
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                self.link.unlink()
        self._queue.put_nowait(b"")


class TcpLine:
    """A TCP serial server (like a Moxa NPort) with one client, the gateway."""

    def __init__(self, server: asyncio.Server) -> None:
        self._server = server
        self._writer: asyncio.StreamWriter | None = None
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.connected = asyncio.Event()

    @classmethod
    async def listen(cls, host: str = "127.0.0.1", port: int = 0) -> TcpLine:
        line: TcpLine | None = None

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            assert line is not None
            await line._serve(reader, writer)

        server = await asyncio.start_server(client, host, port)
        line = cls(server)
        return line

    @property
    def port(self) -> int:
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._writer is not None:  # one master on the bus
            writer.close()
            return
        self._writer = writer
        self.connected.set()
        try:
            while data := await reader.read(4096):
                self._queue.put_nowait(data)
        except ConnectionError:
            pass
        finally:
            self._writer = None
            self.connected.clear()
            writer.close()

    def write(self, data: bytes) -> None:
        if self._writer is not None:
            self._writer.write(data)

    async def read(self) -> bytes:
        return await self._queue.get()

    def close(self) -> None:
        """Stop the server and drop the gateway's connection."""
        self._server.close()
        if self._writer is not None:
            self._writer.close()
        self._queue.put_nowait(b"")


@dataclass
class SimDevice:
    addr: int
    battery: int = 100
    seq: int = 0
    feedback: list[int] = field(default_factory=list)  # statuses of 81 frames besides 01

    def next_seq(self) -> int:
        self.seq = (self.seq + 1) & 0xFFFF
        return self.seq


class SerialSimulator:
    """Devices on one line. ``run_reader()`` must be running for acks to be seen."""

    def __init__(
        self,
        line: Line,
        addrs: list[int],
        *,
        ack_timeout: float = 1.0,
        max_tries: int = 30,
        rng: random.Random | None = None,
    ) -> None:
        self.line = line
        self.devices = {addr: SimDevice(addr) for addr in addrs}
        self.ack_timeout = ack_timeout
        self.max_tries = max_tries
        self._rng = rng or random.Random()
        self._waiting: dict[tuple[int, int], asyncio.Future[AckFrame]] = {}
        self.acks: list[AckFrame] = []
        self.bad_bytes = 0  # downlink bytes that were not a valid frame
        self.on_ack: Callable[[AckFrame], None] | None = None

    async def run_reader(self) -> None:
        decoder = FrameDecoder()
        while data := await self.line.read():
            for item in decoder.feed(data):
                if isinstance(item, Skipped):
                    self.bad_bytes += len(item.data)
                elif isinstance(item, AckFrame):
                    self._acked(item)

    def _acked(self, ack: AckFrame) -> None:
        self.acks.append(ack)
        device = self.devices.get(ack.addr)
        if device is not None and ack.status != AckStatus.RECEIVED:
            device.feedback.append(ack.status)
        waiter = self._waiting.pop((ack.addr, ack.acked_seq), None)
        if waiter is not None and not waiter.done():
            waiter.set_result(ack)
        if self.on_ack is not None:
            self.on_ack(ack)

    async def press(self, addr: int, kind: EventType = EventType.SOS) -> tuple[AckFrame, int]:
        """Send an event and repeat it until acked; the ack and how many sends it took."""
        device = self.devices.setdefault(addr, SimDevice(addr))
        frame = EventFrame(addr, device.next_seq(), CODE_OF_EVENT[kind], device.battery)
        waiter: asyncio.Future[AckFrame] = asyncio.get_running_loop().create_future()
        self._waiting[(addr, frame.seq)] = waiter
        raw = encode(frame)
        try:
            for tries in range(1, self.max_tries + 1):
                self.line.write(raw)
                try:
                    ack = await asyncio.wait_for(asyncio.shield(waiter), self.ack_timeout)
                except TimeoutError:
                    continue
                return ack, tries
        finally:
            self._waiting.pop((addr, frame.seq), None)
        raise TimeoutError(f"no ack for 0x{addr:08X} seq {frame.seq} after {self.max_tries} tries")

    def heartbeat(self, addr: int, rssi: int = -65) -> None:
        device = self.devices[addr]
        self.line.write(encode(HeartbeatFrame(addr, device.next_seq(), device.battery, rssi)))

    def telemetry(self, addr: int, values: tuple[tuple[int, float], ...]) -> None:
        device = self.devices[addr]
        self.line.write(encode(TelemetryFrame(addr, device.next_seq(), values)))

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        """Heartbeats and temperature/humidity of every device each ``interval`` seconds."""
        while not stop.is_set():
            for addr, device in self.devices.items():
                if self._rng.random() < 0.01:
                    device.battery = max(0, device.battery - 1)
                self.heartbeat(addr, rssi=self._rng.randint(-90, -50))
                temperature = round(self._rng.uniform(18.0, 26.0), 1)
                humidity = float(self._rng.randint(30, 60))
                self.telemetry(
                    addr, ((0x01, temperature), (0x02, humidity), (0x04, device.battery))
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)


@dataclass(frozen=True, slots=True)
class SimOptions:
    listen: str | None = None  # HOST:PORT for a TCP serial server; None for a pty
    devices: int = 4
    addr_start: int = 0x1001
    interval: float = 10.0
    press: int | None = None
    duration: float | None = None


async def run_serial_sim(options: SimOptions, stop: asyncio.Event) -> int:
    """The ``scgw sim serial`` command: prints where to point the gateway, then runs."""
    line: PtyLine | TcpLine
    if options.listen is not None:
        host, _, port = options.listen.rpartition(":")
        line = await TcpLine.listen(host or "127.0.0.1", int(port))
        where = f"socket://{host or '127.0.0.1'}:{line.port}"
    else:
        line = PtyLine()
        where = line.path
    addrs = [options.addr_start + i for i in range(options.devices)]
    sim = SerialSimulator(line, addrs)
    print(f"serial line: {where}")
    print("gateway config:")
    print(f'  [[serial.ports]]\n  name = "sim"\n  url = "{where}"\n  baudrate = 9600')
    print("devices (register them with serial_port = sim):")
    for addr in addrs:
        print(f"  serial_addr = 0x{addr:08X}")
    counts: defaultdict[int, int] = defaultdict(int)
    sim.on_ack = lambda ack: counts.__setitem__(ack.status, counts[ack.status] + 1)
    tasks = [
        asyncio.create_task(sim.run_reader(), name="sim-reader"),
        asyncio.create_task(sim.run(options.interval, stop), name="sim-periodic"),
    ]
    if options.duration is not None:
        loop = asyncio.get_running_loop()
        loop.call_later(options.duration, stop.set)
    status = 0
    try:
        if options.press is not None:
            status = await _press_until_stopped(sim, options.press, stop)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        line.close()
    print(f"acks received by status: {dict(counts)}; bad downlink bytes: {sim.bad_bytes}")
    return status


async def _press_until_stopped(sim: SerialSimulator, addr: int, stop: asyncio.Event) -> int:
    press = asyncio.create_task(sim.press(addr))
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({press, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if not press.done():
        press.cancel()
        print(f"press of 0x{addr:08X}: stopped before an ack came")
        return 1
    try:
        ack, tries = press.result()
    except TimeoutError as exc:
        print(f"press not acknowledged: {exc}")
        return 1
    print(f"press of 0x{addr:08X} acked (status {ack.status}) after {tries} send(s)")
    return 0
