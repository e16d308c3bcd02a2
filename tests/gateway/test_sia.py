"""The SIA DC-09 receiver end to end: a panel's TCP connection, answers read back and checked,
events in the store and on the bus."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devices import dc09
from devices.codec import Rejected
from devices.models import DeviceType
from devices.records import DeviceRecord
from gateway.config import ConfigError, load_settings
from gateway.metrics import Metrics
from gateway.sia.receiver import SiaReceiver
from tests.gateway.conftest import gateway_settings
from tests.gateway.recording import Recorder, register_records
from tests.harness.mosquitto import MosquittoServer
from tests.harness.ports import free_port
from tests.harness.waiting import wait_for

KEY_HEX = "00112233445566778899AABBCCDDEEFF0011223344556677"  # AES-192
KEY = bytes.fromhex(KEY_HEX)


class Panel:
    """A panel's side of one DC-09 connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.framer = dc09.Dc09Framer()
        self.answers: list[dc09.Message] = []

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, key: bytes | None = None) -> dc09.Message:
        """The next answer, with its CRC and length checked (and decrypted with ``key``)."""
        while True:
            if self.answers:
                return self.answers.pop(0)
            data = await asyncio.wait_for(self.reader.read(4096), 10)
            assert data, "receiver closed the connection"
            for item in self.framer.feed(data):
                assert isinstance(item, bytes), f"garbage from the receiver: {item!r}"
                body, style = dc09.check_frame(item)
                header, rest = dc09.parse_header(body, style)
                self.answers.append(dc09.parse_content(header, rest, key))


@pytest.fixture
async def sia_gateway(
    mosquitto: MosquittoServer, db_url: str, start_gateway: Any
) -> tuple[Any, Recorder]:
    await register_records(
        db_url,
        [
            DeviceRecord("pendant-7", DeviceType.PENDANT, sia_account="1234", sia_zone="007"),
            DeviceRecord("smoke-12", DeviceType.SMOKE_DETECTOR, sia_account="1234", sia_zone="12"),
            DeviceRecord("unit-5678", DeviceType.WATER_SENSOR, sia_account="5678"),
        ],
    )
    settings = gateway_settings(
        mosquitto,
        db_url,
        sia={
            "bind": f"127.0.0.1:{free_port()}",
            "accounts": [{"account": "1234"}, {"account": "5678", "key": KEY_HEX}],
        },
    )
    gw = await start_gateway(settings)
    receiver = gw.gateway.parts.sia
    await wait_for(lambda: receiver.port, timeout=10, message="SIA receiver listening")
    recorder = Recorder()
    gw.gateway.consequences.listen(recorder)
    return gw, recorder


async def connect(gw: Any) -> Panel:
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.gateway.parts.sia.port)
    return Panel(reader, writer)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


async def test_contact_id_and_sia_events_are_stored_then_acked(
    sia_gateway: tuple[Any, Recorder],
) -> None:
    gw, recorder = sia_gateway
    panel = await connect(gw)
    press = dc09.build("ADM-CID", "0001", "1234", data="#1234|1101 01 007")
    await panel.send(press)
    ack = await panel.answer()
    assert (ack.header.token, ack.header.seq, ack.header.account) == ("ACK", "0001", "1234")
    assert await gw.count("SELECT count(*) FROM v_events WHERE device_id = 'pendant-7'") == 1

    # No ACK reached the panel, so it repeats the message: ACKed again, stored once.
    await panel.send(press)
    assert (await panel.answer()).header.token == "ACK"

    # Two messages in one write, the second split over two writes, garbage in between.
    smoke = dc09.build("SIA-DCS", "0002", "1234", data="#1234|Nri1/FA012")
    restore = dc09.build("ADM-CID", "0003", "1234", data="#1234|3101 01 007")
    await panel.send(b"\x00\x00" + smoke + restore[:10])
    await panel.send(restore[10:])
    assert [(await panel.answer()).header.seq for _ in range(2)] == ["0002", "0003"]

    await panel.send(dc09.build("NULL", "0004", "1234"))  # link test
    assert (await panel.answer()).header.token == "ACK"

    rows = await gw.store.query(
        "SELECT device_id, type FROM v_events WHERE device_id IN ('pendant-7', 'smoke-12')"
        " ORDER BY time, type"
    )
    assert sorted(rows) == [("pendant-7", "restore"), ("pendant-7", "sos"), ("smoke-12", "smoke")]
    assert recorder.of("pendant-7") == [("sos", False), ("sos", True), ("restore", False)]
    assert recorder.of("smoke-12") == [("smoke", False)]
    assert gw.metric("scgw_sia_responses_total", response="ack") == 5

    async def p1_alerts() -> bool:
        sql = "SELECT count(*) FROM v_alerts WHERE kind IN ('sos', 'smoke') AND priority = 'P1'"
        return await gw.count(sql) == 2

    await wait_for(p1_alerts, timeout=10, message="pendant and smoke detector: P1 alerts")
    panel.writer.close()


async def test_encrypted_message_and_account_level_device(
    sia_gateway: tuple[Any, Recorder],
) -> None:
    gw, recorder = sia_gateway
    panel = await connect(gw)
    leak = dc09.build("SIA-DCS", "0101", "5678", data="#5678|Nri1/WA003", timestamp=now(), key=KEY)
    await panel.send(leak)
    ack = await panel.answer(KEY)
    assert ack.header.token == "ACK"
    assert ack.header.encrypted  # the answer to an encrypted message is encrypted
    assert ack.timestamp is not None
    assert abs(ack.timestamp - now()) < timedelta(seconds=5)
    # Zone 3 of 5678 is not registered; the device registered for the whole account is.
    assert recorder.of("unit-5678") == [("water_leak", False)]
    payload = await gw.store.query("SELECT payload FROM v_events WHERE device_id = 'unit-5678'")
    assert "Nri1/WA003" in str(payload[0][0])  # stored decrypted, with the message text
    panel.writer.close()


async def test_bad_input_gets_nak_or_duh_and_nothing_else_is_delayed(
    sia_gateway: tuple[Any, Recorder],
) -> None:
    gw, recorder = sia_gateway
    panel = await connect(gw)
    good = dc09.build("ADM-CID", "0201", "1234", data="#1234|1101 01 007")
    cases: list[tuple[bytes, str]] = [
        (b"\n0000" + good[5:], "NAK"),  # bad CRC
        (good[:5] + b"0999" + good[9:], "NAK"),  # bad length
        (dc09.frame('"SIA-DCS"12L0#1234[]'), "NAK"),  # header not DC-09
        (dc09.build("ADM-CID", "0202", "9999", data="#9999|1101 01 001"), "DUH"),  # account
        (dc09.build("XYZ", "0203", "1234"), "DUH"),  # token we do not take
        (dc09.build("ACK", "0204", "1234"), "DUH"),  # an answer is no uplink
        (dc09.build("ADM-CID", "0205", "1234", data="#1234|banana"), "DUH"),  # bad CID data
        (dc09.build("SIA-DCS", "0206", "5678", data="#5678|NWA1"), "DUH"),  # plain, key set
        (
            dc09.build(  # encrypted, but its time is five minutes old: a replay
                "SIA-DCS",
                "0207",
                "5678",
                data="#5678|NWA1",
                timestamp=now() - timedelta(minutes=5),
                key=KEY,
            ),
            "NAK",
        ),
        (
            dc09.build(  # encrypted with the wrong key
                "SIA-DCS", "0208", "5678", data="#5678|NWA1", timestamp=now(), key=bytes(24)
            ),
            "DUH",
        ),
    ]
    for frame, expected in cases:
        await panel.send(frame)
        answer = await panel.answer()
        assert answer.header.token == expected, frame
        if expected == "NAK":
            assert answer.timestamp is not None  # the receiver's clock, for the panel
            assert answer.header.seq == "0000"
        else:
            assert answer.header.seq == frame.split(b'"')[2][:4].decode()
    # Garbage and an over-long line do not break the connection.
    await panel.send(b"random garbage without frames" + b"\n" + b"x" * 5000)
    await panel.send(good)
    assert (await panel.answer()).header.token == "ACK"
    assert recorder.of("pendant-7") == [("sos", False)]
    assert await gw.count("SELECT count(*) FROM v_events") == 1
    faults = {
        fault: gw.metric("scgw_sia_refused_total", fault=fault)
        for fault in ("bad_crc", "bad_length", "bad_format", "unknown_account", "unsupported")
    }
    assert faults == {
        "bad_crc": 1,
        "bad_length": 1,
        "bad_format": 1,
        "unknown_account": 1,
        "unsupported": 4,
    }
    assert gw.metric("scgw_sia_refused_total", fault="bad_timestamp") == 1
    assert gw.metric("scgw_sia_skipped_total", reason="garbage") >= 1
    skipped_line = gw.metric("scgw_sia_skipped_total", reason="truncated")
    assert skipped_line + gw.metric("scgw_sia_skipped_total", reason="oversize") == 1
    assert gw.metric("scgw_sia_refused_total", fault="bad_data") == 1
    assert (await gw.gateway.readiness())["sia"]["ok"] is True
    assert all(t.restarts == 0 for t in gw.gateway.tasks.values())
    panel.writer.close()


async def test_unregistered_zone_goes_to_pending(sia_gateway: tuple[Any, Recorder]) -> None:
    gw, recorder = sia_gateway
    panel = await connect(gw)
    await panel.send(dc09.build("SIA-DCS", "0301", "1234", data="#1234|NQA44"))
    assert (await panel.answer()).header.token == "ACK"  # kept, so acknowledged
    pending = await gw.store.pending_devices()
    assert [(p.device_id, p.sos_count) for p in pending] == [("sia-1234-44", 1)]
    assert recorder.seen == []
    panel.writer.close()


@pytest.mark.parametrize(
    ("sia", "key", "reason"),
    [
        ({"accounts": [{"account": "1234", "key": "abc"}]}, "sia.accounts.0.key", "hex digits"),
        ({"accounts": [{"account": "1234", "key": "00" * 20}]}, "sia.accounts.0.key", "bytes"),
        ({"accounts": [{"account": "12G4"}]}, "sia.accounts.0.account", "pattern"),
        ({"accounts": [{"account": "1234"}, {"account": "1234"}]}, "sia.accounts", "unique"),
        ({"bind": "nowhere"}, "sia.bind", "HOST:PORT"),
        ({"check_timestamps": "sometimes"}, "sia.check_timestamps", "encrypted"),
        ({"timestamp_past": "soon"}, "sia.timestamp_past", "duration"),
    ],
)
def test_bad_sia_config_names_the_key(sia: dict[str, Any], key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(None, sia=sia)
    assert f"key {key}:" in str(info.value)
    assert reason in str(info.value)
    assert "00" * 20 not in str(info.value)  # a key is never echoed


def test_sia_config_defaults() -> None:
    sia = load_settings(None, sia={"bind": "0.0.0.0:12128"}).sia
    assert (sia.timestamp_past, sia.timestamp_future, sia.check_timestamps) == (
        40.0,
        20.0,
        "encrypted",
    )
    assert not sia.tolerate_decimal_length
    assert not sia.tolerate_binary_crc


async def test_a_taken_port_is_not_ready_and_says_why(
    mosquitto: MosquittoServer, db_url: str, start_gateway: Any
) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        settings = gateway_settings(mosquitto, db_url, sia={"bind": f"127.0.0.1:{port}"})
        gw = await start_gateway(settings)
        receiver = gw.gateway.parts.sia
        await wait_for(lambda: receiver.state.last_error, timeout=10, message="bind failure")
        checks = await gw.gateway.readiness()
        assert checks["sia"]["ok"] is False
        assert "cannot listen" in str(checks["sia"]["last_error"])
        assert checks["broker"]["ok"] is True  # everything else goes on


def bare_receiver(**sia: Any) -> SiaReceiver:
    """A receiver with no store behind it: enough for messages that report nothing."""
    settings = load_settings(
        None, sia={"bind": "127.0.0.1:12128", "accounts": [{"account": "1234"}], **sia}
    ).sia
    metrics = Metrics()
    return SiaReceiver(settings, intake=Refusals(metrics), metrics=metrics)  # type: ignore[arg-type]


class Refusals:
    """The one part of the intake a message that reports nothing reaches: counted refusals."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def reject(self, lane: str, where: str, rejection: Rejected) -> None:
        self._metrics.rejected.labels(lane=lane, reason=rejection.reason.value).inc()


@pytest.mark.parametrize(
    ("mode", "expected"), [("encrypted", "ACK"), ("all", "NAK"), ("off", "ACK")]
)
async def test_timestamp_checks_by_config(mode: str, expected: str) -> None:
    receiver = bare_receiver(check_timestamps=mode)
    stale = dc09.build("NULL", "0001", "1234", timestamp=now() - timedelta(minutes=3))
    (answer,) = dc09.Dc09Framer().feed(await receiver.handle(stale[1:-1]))
    assert isinstance(answer, bytes)
    assert dc09.parse_header(dc09.check_frame(answer)[0])[0].token == expected
    fresh = dc09.build("NULL", "0002", "1234", timestamp=now())
    assert b'"ACK"' in await receiver.handle(fresh[1:-1])


async def test_tolerances_by_config() -> None:
    decimal = dc09.build("NULL", "0003", "1234", style=dc09.Style(decimal_length=True))
    binary = dc09.build("NULL", "0004", "1234", style=dc09.Style(binary_crc=True))
    strict = bare_receiver()
    assert b'"NAK"' in await strict.handle(decimal[1:-1])
    assert b'"NAK"' in await strict.handle(binary[1:-1])
    answer = await bare_receiver(tolerate_decimal_length=True).handle(decimal[1:-1])
    assert answer[5:9] == b"0018"  # "ACK"0003L0#1234[] is 18 characters, said in decimal
    answer = await bare_receiver(tolerate_binary_crc=True).handle(binary[1:-1])
    assert answer[3:7] == b"0012"  # binary CRC (2 bytes), then the hex length
    assert dc09.crc16_arc(answer[7:-1]) == int.from_bytes(answer[1:3], "big")
