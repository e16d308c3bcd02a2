"""Serial ingest end to end over real pseudo-terminals (and a TCP serial server): the gateway's
reader on one end, the test writing frames on the other and reading the 81 acks back through
the CRC-checking decoder."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bench.services.postgres import PostgresServer
from devices.codecs import Skipped
from devices.feedback import Delivery, Feedback, FeedbackKind
from devices.models import DeviceType
from devices.records import DeviceRecord
from devices.serial_frame import (
    AckFrame,
    EventFrame,
    Frame,
    FrameDecoder,
    HeartbeatFrame,
    TelemetryFrame,
    encode,
)
from gateway.metrics import Metrics
from gateway.serial.feedback import SerialFeedback
from gateway.serial.reader import SerialPortReader
from simulators.serial_device import PtyLine, SerialSimulator, TcpLine
from tests.gateway.conftest import Publisher, gateway_settings, register
from tests.gateway.recording import Recorder, register_records
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

BTN = 0x00001001
TH = 0x00001002
STRANGER = 0x00009999


@pytest.fixture(autouse=True)
def fast_reopen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing constants down for tests: reopen quickly, give up a silent half frame fast."""
    monkeypatch.setattr("gateway.serial.reader.REOPEN_FIRST", 0.05)
    monkeypatch.setattr("gateway.serial.reader.REOPEN_MAX", 0.3)


@pytest.fixture
async def lines() -> AsyncIterator[list[PtyLine | TcpLine]]:
    opened: list[PtyLine | TcpLine] = []
    yield opened
    for line in opened:
        line.close()


@contextlib.asynccontextmanager
async def reading(sim: SerialSimulator) -> AsyncIterator[SerialSimulator]:
    task = asyncio.create_task(sim.run_reader())
    try:
        yield sim
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def registered(db_url: str) -> None:
    await register_records(
        db_url,
        [
            DeviceRecord("btn-101", DeviceType.SOS_BUTTON, serial_port="bus1", serial_addr=BTN),
            DeviceRecord("th-101", DeviceType.TEMP_HUMIDITY, serial_port="bus1", serial_addr=TH),
        ],
    )


def acks_for(sim: SerialSimulator, addr: int, seq: int) -> Callable[[], list[AckFrame]]:
    return lambda: [a for a in sim.acks if a.addr == addr and a.acked_seq == seq]


async def start(
    start_gateway: Any, mosquitto: MosquittoServer, db_url: str, url: str, **extra: Any
) -> Any:
    settings = gateway_settings(
        mosquitto, db_url, serial={"ports": [{"name": "bus1", "url": url}]}, **extra
    )
    gw = await start_gateway(settings)
    reader = gw.gateway.parts.serial["bus1"]
    await wait_for(lambda: reader.state.open, timeout=10, message="serial port open")
    return gw


@pytest.mark.fault(
    "Serial line noise: garbage, bad CRC, split frames, duplicates",
    checks="resynchronised on AA 55, skips counted, one row per frame, 81 acks",
)
async def test_frames_byte_by_byte_garbage_bad_crc_duplicates_and_acks(
    mosquitto: MosquittoServer,
    db_url: str,
    start_gateway: Any,
    tmp_path: Path,
    lines: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[int] = []
    feed = FrameDecoder.feed

    def spy(self: FrameDecoder, data: bytes) -> list[Frame | Skipped]:
        reads.append(len(data))
        return feed(self, data)

    monkeypatch.setattr(FrameDecoder, "feed", spy)
    await registered(db_url)
    line = PtyLine(tmp_path / "ttyBUS1")
    lines.append(line)
    gw = await start(start_gateway, mosquitto, db_url, line.url)
    recorder = Recorder()
    gw.gateway.consequences.listen(recorder)

    async with reading(SerialSimulator(line, [BTN, TH])) as sim:
        # An SOS, one byte at a time with garbage before it: the reader sees many small reads.
        for byte in b"\x00\x13\xaa\x37noise" + encode(EventFrame(BTN, 1, 0x01, 88)):
            line.write(bytes([byte]))
            await asyncio.sleep(0.002)  # pacing the bytes, not waiting for a result
        await wait_for(acks_for(sim, BTN, 1), timeout=10, message="81 ack of seq 1")
        assert reads.count(1) >= 10  # the frame really arrived in pieces

        # A corrupted frame is dropped and counted; nothing is acked for it.
        bad = bytearray(encode(EventFrame(BTN, 2, 0x03, 88)))
        bad[-2] ^= 0x5A
        line.write(bytes(bad))
        # The device missed our ack and repeats seq 1: acked again, stored once.
        line.write(encode(EventFrame(BTN, 1, 0x01, 88)))
        await wait_for(
            lambda: len(acks_for(sim, BTN, 1)()) == 2, timeout=10, message="seq 1 acked twice"
        )
        # Heartbeat and telemetry of the other device, concatenated in one write.
        line.write(
            encode(HeartbeatFrame(TH, 7, 91, -63))
            + encode(TelemetryFrame(TH, 8, ((0x01, 21.5), (0x02, 40.0))))
        )
        # An unregistered address: kept in the pending list, and answered.
        line.write(encode(EventFrame(STRANGER, 3, 0x01, 50)))
        await wait_for(acks_for(sim, STRANGER, 3), timeout=10, message="stranger acked")
        # An event code nobody knows: not accepted, so not acked.
        line.write(encode(EventFrame(BTN, 4, 0x7E, 88)))

        await wait_for(
            lambda: gw.count("SELECT count(*) FROM v_readings WHERE device_id = 'th-101'"),
            timeout=10,
            message="readings stored",
        )
        await wait_for(
            lambda: gw.metric(
                "scgw_messages_rejected_total", lane="serial", reason="invalid_payload"
            ),
            timeout=10,
            message="unknown code counted",
        )

    assert all(a.status == 1 and a.seq == a.acked_seq for a in sim.acks)
    assert sim.bad_bytes == 0  # every byte the gateway wrote was a valid, CRC-checked frame
    assert acks_for(sim, BTN, 2)() == []
    assert acks_for(sim, BTN, 4)() == []
    rows = await gw.store.query("SELECT type, payload FROM v_events WHERE device_id = 'btn-101'")
    assert [r[0] for r in rows] == ["sos"]
    assert recorder.of("btn-101") == [("sos", False), ("sos", True)]
    assert gw.metric("scgw_serial_skipped_total", port="bus1", reason="bad_crc") == 1
    assert gw.metric("scgw_serial_skipped_total", port="bus1", reason="garbage") >= 1
    assert gw.metric("scgw_duplicates_total", kind="event") == 1
    values = await gw.store.query(
        "SELECT metric, value FROM v_readings WHERE device_id = 'th-101' ORDER BY metric"
    )
    assert values == [("battery", 91.0), ("humidity", 40.0), ("rssi", -63.0), ("temperature", 21.5)]
    devices = await gw.store.query(
        "SELECT battery, online FROM v_devices WHERE device_id = 'th-101'"
    )
    assert [(b, bool(o)) for b, o in devices] == [(91, True)]
    pending = await gw.store.pending_devices()
    assert [(p.device_id, p.sos_count) for p in pending] == [("serial-bus1-0x00009999", 1)]
    await wait_for(
        lambda: gw.count(
            "SELECT count(*) FROM v_alerts WHERE device_id = 'btn-101' AND kind = 'sos'"
            " AND priority = 'P1'"
        ),
        timeout=10,
        message="the press opened one P1 alert",
    )
    assert all(t.restarts == 0 for t in gw.gateway.tasks.values())


@pytest.mark.fault(
    "Serial USB dongle unplugged, then plugged back",
    checks="port reopened with backoff (reopens counted), /readyz stays ready with serial "
    "degraded, MQTT presses stored meanwhile, frames acked after replug",
)
async def test_port_disappears_and_comes_back(
    mosquitto: MosquittoServer,
    db_url: str,
    start_gateway: Any,
    tmp_path: Path,
    lines: list[Any],
    publisher: Publisher,
) -> None:
    await registered(db_url)
    await register(db_url, ["mqtt-btn"])
    link = tmp_path / "ttyUSB-by-id"
    line = PtyLine(link)
    lines.append(line)
    gw = await start(start_gateway, mosquitto, db_url, str(link))
    reader = gw.gateway.parts.serial["bus1"]
    async with reading(SerialSimulator(line, [BTN])) as sim:
        ack, _ = await sim.press(BTN)
        assert ack.status == 1

    line.close()  # USB unplugged: the device path vanishes
    await wait_for(
        lambda: not reader.state.open and reader.state.reopens >= 2,
        timeout=10,
        message="port seen gone, reopen attempts going on",
    )
    checks = await gw.gateway.readiness()
    serial = checks["serial"]
    assert serial["ok"] is True  # the gateway stays ready: only this bus is silent
    assert serial["degraded"] is True
    assert serial["ports"]["bus1"]["open"] is False
    assert serial["ports"]["bus1"]["last_error"]
    assert gw.metric("scgw_serial_port_open", port="bus1") == 0
    assert gw.metric("scgw_serial_port_reopens_total", port="bus1") >= 2

    # Meanwhile the rest of the gateway works.
    publisher.json("scgw/mqtt-btn/event", {"id": "m-1", "type": "sos"})
    await wait_for(
        lambda: gw.count("SELECT count(*) FROM v_events WHERE device_id = 'mqtt-btn'"),
        timeout=10,
        message="MQTT press stored while the port is gone",
    )

    line = PtyLine(link)  # plugged back in: a new pty behind the same name
    lines.append(line)
    await wait_for(lambda: reader.state.open, timeout=10, message="port reopened")
    async with reading(SerialSimulator(line, [BTN])) as sim:
        sim.devices[BTN].seq = 10
        ack, _ = await sim.press(BTN)
        assert (ack.acked_seq, ack.status) == (11, 1)
    assert await gw.count("SELECT count(*) FROM v_events WHERE device_id = 'btn-101'") == 2
    assert (await gw.gateway.readiness())["serial"]["degraded"] is False


@pytest.mark.fault(
    "socket:// serial server stops and restarts",
    checks="the reader reconnects and frames flow again",
)
async def test_socket_serial_server_stops_and_restarts(
    mosquitto: MosquittoServer, db_url: str, start_gateway: Any, lines: list[Any]
) -> None:
    await registered(db_url)
    port = free_port()  # below the ephemeral range: free again when the server restarts
    line = await TcpLine.listen(port=port)
    lines.append(line)
    gw = await start(start_gateway, mosquitto, db_url, line.url)
    reader = gw.gateway.parts.serial["bus1"]
    await wait_for(line.connected.is_set, timeout=10, message="gateway connected")

    line.close()  # the serial server goes away
    await wait_for(lambda: not reader.state.open, timeout=10, message="connection lost seen")

    line = await TcpLine.listen(port=port)
    lines.append(line)
    sim = SerialSimulator(line, [BTN], ack_timeout=0.3, max_tries=100)
    async with reading(sim):
        # Pressed while the gateway may not be back yet: repeated until the ack comes.
        ack, tries = await sim.press(BTN)
    assert ack.status == 1
    assert tries >= 1
    assert reader.state.open
    assert await gw.count("SELECT count(*) FROM v_events WHERE device_id = 'btn-101'") == 1


async def test_feedback_goes_out_as_81_with_its_status(
    mosquitto: MosquittoServer, db_url: str, start_gateway: Any, tmp_path: Path, lines: list[Any]
) -> None:
    await registered(db_url)
    line = PtyLine(tmp_path / "ttyBUS1")
    lines.append(line)
    gw = await start(start_gateway, mosquitto, db_url, line.url)
    async with reading(SerialSimulator(line, [BTN])) as sim:
        # "received" was the 81/01 written after the store: not repeated, but reported done.
        kinds = (FeedbackKind.ALERT_RECEIVED, FeedbackKind.RESPONDER_ASSIGNED)
        sender = SerialFeedback(gw.gateway.parts.serial, gw.gateway.registry)
        for kind in (*kinds, FeedbackKind.RESOLVED):
            sent = await sender.send(
                Feedback("btn-101", kind, alert_id="a-1", source="serial", seq=42)
            )
            assert sent is Delivery.SENT
        await wait_for(
            lambda: [a.status for a in acks_for(sim, BTN, 42)()] == [2, 3],
            timeout=10,
            message="feedback frames read back",
        )
        assert sim.devices[BTN].feedback == [2, 3]
    unknown = Feedback("th-nowhere", FeedbackKind.RESOLVED, "a-2", source="serial", seq=1)
    assert await sender.send(unknown) is Delivery.NEVER
    no_seq = Feedback("btn-101", FeedbackKind.RESOLVED, "a-3", source="serial")
    assert await sender.send(no_seq) is Delivery.NEVER


async def test_a_url_asyncio_cannot_read_is_reported_not_hidden() -> None:
    reader = SerialPortReader(
        name="bus9",
        url="loop://",  # pyserial opens it, but it has no file descriptor to wait on
        baudrate=9600,
        intake=None,  # type: ignore[arg-type]  # never reached: nothing can be read
        metrics=Metrics(),
    )
    task = asyncio.create_task(reader.run())
    try:
        await wait_for(lambda: reader.state.last_error, timeout=10, message="error reported")
    finally:
        task.cancel()
    assert "no file descriptor" in str(reader.state.last_error)
    assert not reader.state.open


async def test_serial_events_during_a_database_outage_are_acked_and_stored_once_after(
    pg_owned_server: PostgresServer,
    mosquitto: MosquittoServer,
    start_gateway: Any,
    tmp_path: Path,
    lines: list[Any],
) -> None:
    """The registry cannot be read while PostgreSQL is stopped: a known caller is answered from
    memory and an unknown address is spooled as it is, neither stalls the line."""
    db_url = await asyncio.to_thread(pg_owned_server.create_database, "serial_outage")
    await registered(db_url)
    line = PtyLine(tmp_path / "ttyBUS1")
    lines.append(line)
    gw = await start(
        start_gateway,
        mosquitto,
        db_url,
        line.url,
        ingest={"unknown_recheck": "0s"},  # every unknown address meets the outage
        spool={"dir": str(tmp_path / "spool"), "write_timeout": "500ms"},
    )
    async with reading(SerialSimulator(line, [BTN, STRANGER])) as sim:
        await asyncio.to_thread(pg_owned_server.stop)
        line.write(encode(EventFrame(STRANGER, 3, 0x01, 50)))  # first: it must not block BTN
        line.write(encode(EventFrame(BTN, 5, 0x01, 80)))
        await wait_for(acks_for(sim, BTN, 5), timeout=20, message="the press acked (spooled)")
        await wait_for(acks_for(sim, STRANGER, 3), timeout=20, message="the stranger acked")
        assert not pg_owned_server.running
        assert gw.metric("scgw_spooled_total", kind="event") == 2

        await asyncio.to_thread(pg_owned_server.start)
        spool = gw.gateway.spool
        await wait_for(
            lambda: spool is not None and not spool.active, timeout=60, message="spool drained"
        )
    rows = await gw.store.query("SELECT device_id, type FROM v_events")
    assert [tuple(r) for r in rows] == [("btn-101", "sos")]
    pending = await gw.store.pending_devices()
    assert [(p.device_id, p.sos_count) for p in pending] == [("serial-bus1-0x00009999", 1)]
