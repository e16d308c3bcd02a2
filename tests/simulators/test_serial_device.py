"""The serial device simulator: repeats a press until the 81 ack comes, checks every ack's CRC."""

from __future__ import annotations

import asyncio
import contextlib
import os

import pytest

from devices.codecs import Skipped
from devices.serial_frame import AckFrame, EventFrame, FrameDecoder, encode_ack
from gateway.cli import main
from simulators.serial_device import PtyLine, SerialSimulator
from tests.harness.waiting import wait_for


async def test_press_is_repeated_until_acked() -> None:
    line = PtyLine()
    gateway_end = os.open(line.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    sim = SerialSimulator(line, [0x2001], ack_timeout=0.05, max_tries=50)
    reader = asyncio.create_task(sim.run_reader())
    decoder = FrameDecoder()
    seen: list[EventFrame] = []

    def gateway_reads() -> int:
        with contextlib.suppress(BlockingIOError):
            for item in decoder.feed(os.read(gateway_end, 4096)):
                assert isinstance(item, EventFrame)
                seen.append(item)
        return len(seen)

    try:
        press = asyncio.create_task(sim.press(0x2001))
        await wait_for(lambda: gateway_reads() >= 3, timeout=10, message="three sends")
        assert len({(f.addr, f.seq, f.code) for f in seen}) == 1  # the same frame each time
        os.write(gateway_end, b"\x00garbage" + encode_ack(0x2001, 9, 9, 1))  # another seq
        os.write(gateway_end, encode_ack(0x2001, seen[0].seq, seen[0].seq, 1))
        ack, tries = await asyncio.wait_for(press, 10)
        assert ack == AckFrame(0x2001, seen[0].seq, seen[0].seq, 1)
        assert tries >= 3
        assert sim.bad_bytes == len(b"\x00garbage")
        os.write(gateway_end, encode_ack(0x2001, 5, 5, 3))  # feedback: resolved
        await wait_for(lambda: sim.devices[0x2001].feedback == [3], timeout=10, message="fb")
    finally:
        reader.cancel()
        os.close(gateway_end)
        line.close()


async def test_no_ack_gives_up() -> None:
    line = PtyLine()
    sim = SerialSimulator(line, [1], ack_timeout=0.01, max_tries=3)
    try:
        with pytest.raises(TimeoutError):
            await sim.press(1)
    finally:
        line.close()


def test_heartbeats_are_valid_frames() -> None:
    async def run() -> list[object]:
        line = PtyLine()
        fd = os.open(line.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        sim = SerialSimulator(line, [1, 2])
        sim.heartbeat(1)
        sim.telemetry(2, ((0x01, 20.5),))
        decoder = FrameDecoder()
        items: list[object] = []

        def got() -> int:
            with contextlib.suppress(BlockingIOError):
                items.extend(decoder.feed(os.read(fd, 4096)))
            return len(items)

        await wait_for(lambda: got() >= 2, timeout=10, message="two frames")
        os.close(fd)
        line.close()
        return items

    items = asyncio.run(run())
    assert not any(isinstance(i, Skipped) for i in items)


def test_cli_runs_for_a_while_and_says_where(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "serial", "--devices", "2", "--interval", "0.05", "--duration", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "serial line: /dev/pts/" in out
    assert "serial_addr = 0x00001001" in out
    assert main(["sim", "serial", "--listen", "127.0.0.1:0", "--duration", "0.1"]) == 0
    assert "serial line: socket://127.0.0.1:" in capsys.readouterr().out
