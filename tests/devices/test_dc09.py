"""SIA DC-09: golden frames, CRC and length checked independently, AES, answers, meaning."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given, settings
from hypothesis import strategies as st

from devices import dc09
from devices.codecs import Skipped
from devices.models import DeviceState, Event, EventType, Status

# A copy of shared/data/sia_dc09_vectors.txt, so the suite runs from any checkout.
VECTORS = Path(__file__).resolve().parent / "data" / "sia_dc09_vectors.txt"
KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
TS = datetime(2026, 11, 27, 8, 30, 15, tzinfo=UTC)


def reference_crc(data: bytes) -> int:
    """CRC-16/ARC from its definition, bit by bit (no table): poly 0x8005 reflected, init 0."""
    crc = 0
    for byte in data:
        for bit in range(8):
            mix = (crc ^ (byte >> bit)) & 1
            crc >>= 1
            if mix:
                crc ^= 0xA001
    return crc


def reference_cbc_decrypt(key: bytes, data: bytes) -> bytes:
    """CBC with a zero IV built by hand over single-block AES (ECB), to check the codec."""
    ecb = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    previous = bytes(16)
    out = b""
    for i in range(0, len(data), 16):
        block = data[i : i + 16]
        plain = ecb.update(block)
        out += bytes(a ^ b for a, b in zip(plain, previous, strict=True))
        previous = block
    return out


def vector_frames() -> list[bytes]:
    lines = VECTORS.read_text(encoding="utf-8").splitlines()
    raw = [line.strip() for line in lines if line.startswith("<LF>")]
    return [r.replace("<LF>", "\n").replace("<CR>", "\r").encode("ascii") for r in raw]


def parse(frame: bytes, key: bytes | None = None) -> dc09.Message:
    """Frame (with LF and CR) → checked, parsed message."""
    (inner,) = dc09.Dc09Framer().feed(frame)
    assert isinstance(inner, bytes)
    body, style = dc09.check_frame(inner)
    header, rest = dc09.parse_header(body, style)
    return dc09.parse_content(header, rest, key)


# -- golden vectors -----------------------------------------------------------------------------
def test_crc_check_value() -> None:
    assert dc09.crc16_arc(b"123456789") == 0xBB3D  # the catalogue check value
    assert reference_crc(b"123456789") == 0xBB3D


@pytest.mark.parametrize("frame", vector_frames(), ids=lambda f: f[9:20].decode())
def test_vectors_crc_and_length_independently(frame: bytes) -> None:
    assert frame[0] == 0x0A
    assert frame[-1] == 0x0D
    crc_field, length_field, body = frame[1:5], frame[5:9], frame[9:-1]
    assert int(crc_field, 16) == reference_crc(body)
    assert int(length_field, 16) == len(body)
    assert dc09.check_frame(frame[1:-1])[0] == body.decode()


def test_vectors_parse_and_rebuild_byte_for_byte() -> None:
    first, second, nak = (parse(f) for f in vector_frames())
    assert first.header == dc09.Header("SIA-DCS", False, "0001", "F3", "77", "1234")
    assert first.data == "#1234|NRR|Atest"
    assert second.header.prefix == "0"
    assert second.data == ""
    assert nak.header.token == "NAK"
    assert nak.timestamp == datetime(2025, 9, 24, 16, 20, 1, tzinfo=UTC)
    rebuilt = [
        dc09.build("SIA-DCS", "0001", "1234", prefix="77", receiver="F3", data=first.data),
        dc09.build("SIA-DCS", "0001", "1234", prefix="0"),
        dc09.nak(datetime(2025, 9, 24, 16, 20, 1, tzinfo=UTC)),
    ]
    assert rebuilt == vector_frames()


def test_vectors_framed_from_one_split_stream() -> None:
    stream = b"junk" + b"".join(vector_frames()) + b"\n12"
    framer = dc09.Dc09Framer()
    items = [item for i in range(0, len(stream), 5) for item in framer.feed(stream[i : i + 5])]
    assert [i for i in items if isinstance(i, bytes)] == [f[1:-1] for f in vector_frames()]
    assert [i.reason for i in items if isinstance(i, Skipped)] == ["garbage"]


# -- encryption -----------------------------------------------------------------------------------
def test_encrypted_round_trip_checked_by_hand() -> None:
    pad = b"\x01" * 10
    frame = dc09.build(
        "SIA-DCS", "0042", "1234", data="#1234|Nri1/FA015", timestamp=TS, key=KEY, pad=pad
    )
    body = frame[9:-1]
    assert int(frame[1:5], 16) == reference_crc(body)
    assert int(frame[5:9], 16) == len(body)
    head, _, cipher_hex = body.partition(b"[")
    assert head == b'"*SIA-DCS"0042L0#1234'
    plain = reference_cbc_decrypt(KEY, bytes.fromhex(cipher_hex.decode()))
    assert plain == pad + b"|#1234|Nri1/FA015]_08:30:15,11-27-2026"
    message = parse(frame, KEY)
    assert message.header.encrypted
    assert message.timestamp == TS
    assert dc09.reports(message) == [
        dc09.Report("15", "FA", EventType.SMOKE, modifiers=(("ri", "1"),))
    ]


def test_third_party_encrypted_frame() -> None:
    # An encrypted frame published as test data by another DC-09 project, key
    # "AAAAAAAAAAAAAAAA" (ASCII; as hex below). Its pad is sixteen ASCII zeros and its data
    # carries no "#account|" prefix.
    key = dc09.parse_key("41" * 16)
    frame = (
        b'\n05BB0076"*SIA-DCS"7654L0#1111[C07DA1EB73C617857476EE5D79436CEE5E0084485E79EC56B0D5D1F3'
        b"F6E648B278050BBCCBC8FE5DCA7E3C80DBDD4945\r"
    )
    body = frame[9:-1]
    assert int(frame[1:5], 16) == reference_crc(body)
    assert int(frame[5:9], 16) == len(body)
    message = parse(frame, key)
    assert message.header.account == "1111"
    assert message.data == "Nri1/WA000"
    assert message.timestamp == datetime(2020, 7, 9, 16, 4, 2, tzinfo=UTC)
    assert dc09.reports(message) == [
        dc09.Report("0", "WA", EventType.WATER_LEAK, modifiers=(("ri", "1"),))
    ]


def test_wrong_key_and_missing_key() -> None:
    frame = dc09.build("ADM-CID", "0001", "1234", data="#1234|1101 01 001", timestamp=TS, key=KEY)
    with pytest.raises(dc09.Dc09Error) as info:
        parse(frame, bytes(16))
    assert info.value.fault is dc09.Fault.UNSUPPORTED
    assert info.value.header is not None
    with pytest.raises(dc09.Dc09Error) as info:
        parse(frame, None)
    assert info.value.fault is dc09.Fault.UNSUPPORTED


def test_encrypted_ack_decrypts_to_an_empty_block_and_time() -> None:
    frame = dc09.build("SIA-DCS", "0007", "1234", data="#1234|NQA1", timestamp=TS, key=KEY)
    answer = dc09.ack(parse(frame, KEY).header, KEY, TS)
    assert answer.startswith(b"\n")
    assert b'"*ACK"0007L0#1234[' in answer
    reply = parse(answer, KEY)
    assert reply.data == ""
    assert reply.timestamp == TS


@pytest.mark.parametrize("text", ["00", "0" * 30, "zz" * 16, "41" * 20])
def test_bad_keys(text: str) -> None:
    with pytest.raises(ValueError, match="AES key"):
        dc09.parse_key(text)


# -- answers ----------------------------------------------------------------------------------
def test_ack_and_duh_echo_the_header() -> None:
    header = parse(vector_frames()[0]).header
    ack = dc09.ack(header, None, TS)
    assert ack[9:-1] == b'"ACK"0001RF3L77#1234[]'
    assert int(ack[1:5], 16) == reference_crc(ack[9:-1])
    assert int(ack[5:9], 16) == 22
    assert dc09.duh(header)[9:-1] == b'"DUH"0001RF3L77#1234[]'


# -- checks and tolerance -------------------------------------------------------------------------
def test_bad_crc_and_bad_length() -> None:
    good = vector_frames()[1][1:-1]
    with pytest.raises(dc09.Dc09Error) as info:
        dc09.check_frame(b"0000" + good[4:])
    assert info.value.fault is dc09.Fault.BAD_CRC
    with pytest.raises(dc09.Dc09Error) as info:
        dc09.check_frame(good[:4] + b"0017" + good[8:])
    assert info.value.fault is dc09.Fault.BAD_LENGTH
    for broken in (b"", b"96ED", b"96ED0016SIA-DCS", b"XXXX0016" + good[8:]):
        with pytest.raises(dc09.Dc09Error) as info:
            dc09.check_frame(broken)
        assert info.value.fault is dc09.Fault.BAD_FORMAT


def test_decimal_length_only_when_tolerated() -> None:
    decimal = dc09.build("NULL", "0003", "1234", style=dc09.Style(decimal_length=True))
    assert decimal[5:9] == b"0019"  # 19 characters, written in decimal
    with pytest.raises(dc09.Dc09Error):
        dc09.check_frame(decimal[1:-1])
    body, style = dc09.check_frame(decimal[1:-1], dc09.Tolerance(decimal_length=True))
    assert style.decimal_length
    assert body == '"NULL"0003L0#1234[]'
    header, _ = dc09.parse_header(body, style)
    assert dc09.ack(header, None, TS)[5:9] == b"0018"  # answered the same way


def test_binary_crc_only_when_tolerated_even_with_lf_inside() -> None:
    # Find a sequence number whose CRC contains an LF byte: framing on LF would cut it.
    for seq in range(10000):
        frame = dc09.build("NULL", f"{seq:04d}", "1234", style=dc09.Style(binary_crc=True))
        if 0x0A in frame[1:3]:
            break
    strict = [i for i in dc09.Dc09Framer().feed(frame) if isinstance(i, bytes)]
    assert all(not _checks(i, dc09.Tolerance()) for i in strict)
    (inner,) = dc09.Dc09Framer(binary_crc=True).feed(frame)
    assert isinstance(inner, bytes)
    body, style = dc09.check_frame(inner, dc09.Tolerance(binary_crc=True))
    assert style.binary_crc
    assert body.startswith('"NULL"')


def _checks(frame: bytes, tolerance: dc09.Tolerance) -> bool:
    try:
        dc09.check_frame(frame, tolerance)
    except dc09.Dc09Error:
        return False
    return True


def test_timestamp_window() -> None:
    now = TS
    ok = dc09.timestamp_ok
    assert ok(now - timedelta(seconds=40), now, past=40, future=20)
    assert not ok(now - timedelta(seconds=41), now, past=40, future=20)
    assert ok(now + timedelta(seconds=20), now, past=40, future=20)
    assert not ok(now + timedelta(seconds=21), now, past=40, future=20)


def test_impossible_timestamp_and_missing_timestamp() -> None:
    frame = dc09.frame('"SIA-DCS"0001L0#1234[#1234|NFA1]_25:61:00,13-40-2026')
    with pytest.raises(dc09.Dc09Error) as info:
        parse(frame)
    assert info.value.fault is dc09.Fault.BAD_TIMESTAMP
    no_time = dc09.frame('"*SIA-DCS"0001L0#1234[' + dc09.encrypt_region("#1234|NFA1]", KEY))
    with pytest.raises(dc09.Dc09Error) as info:
        parse(no_time, KEY)
    assert info.value.fault is dc09.Fault.BAD_TIMESTAMP


# -- meaning ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("#1234|Nri1/FA015", [("15", "FA", EventType.SMOKE)]),
        ("#1234|NGA2", [("2", "GA", EventType.GAS)]),
        ("#1234|Nri3/WA007", [("7", "WA", EventType.WATER_LEAK)]),
        ("#1234|NQA1", [("1", "QA", EventType.SOS)]),
        ("#1234|NMA1", [("1", "MA", EventType.SOS)]),
        ("#1234|NPA1/PH1", [("1", "PA", EventType.SOS), ("1", "PH", EventType.RESTORE)]),
        ("#1234|NFH015", [("15", "FH", EventType.RESTORE)]),
        ("#1234|Nti10:10/id12/ri1/YT", [("", "YT", EventType.LOW_BATTERY)]),
        ("#1234|NBA3", [("3", "BA", None)]),  # burglary: no SPEC meaning (stored as other)
        ("Nri1/RP", [("", "RP", None)]),  # periodic test, no account prefix
        ("#1234|NRR|Atest", [("", "RR", None)]),  # text after '|' is ignored
        ("#1234|NFA^kitchen^015", [("15", "FA", EventType.SMOKE)]),
    ],
)
def test_sia_dcs_codes(data: str, expected: list[tuple[str, str, EventType | None]]) -> None:
    message = parse(dc09.build("SIA-DCS", "0001", "1234", data=data))
    assert [(r.zone, r.code, r.meaning) for r in dc09.reports(message)] == expected


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Modifiers before the code with no separator, the way many panels send them.
        (
            "#1234|Nri1pi003da12-01-26ti12:34:56FA012^Kitchen / hall | 2F^",
            [
                (
                    "12",
                    "FA",
                    EventType.SMOKE,
                    "Kitchen / hall | 2F",
                    (("ri", "1"), ("pi", "003"), ("da", "12-01-26"), ("ti", "12:34:56")),
                )
            ],
        ),
        # An opening with text, then a closing of another area: modifiers carry forward.
        (
            "#1234|Nri1/OP501^opened by 2^/ri2CL3",
            [
                ("501", "OP", None, "opened by 2", (("ri", "1"),)),
                ("3", "CL", None, "", (("ri", "2"),)),
            ],
        ),
        ("#1234|N^text before^PA1", [("1", "PA", EventType.SOS, "text before", ())]),
    ],
)
def test_sia_dcs_modifiers_and_text(
    data: str, expected: list[tuple[str, str, EventType | None, str, tuple[tuple[str, str], ...]]]
) -> None:
    message = parse(dc09.build("SIA-DCS", "0001", "1234", data=data))
    found = [(r.zone, r.code, r.meaning, r.text, r.modifiers) for r in dc09.reports(message)]
    assert found == expected


def test_unmapped_reports_are_kept_as_other_with_their_code_and_text() -> None:
    message = parse(dc09.build("SIA-DCS", "0031", "1234", data="#1234|Nri1/OP501^opened^"))
    (decoded,) = dc09.decode_reports(message, TS)
    (event,) = decoded.messages
    assert isinstance(event, Event)
    assert event.type is EventType.OTHER
    payload = json.loads(event.payload)
    assert (payload["code"], payload["text"], payload["modifiers"]) == ("OP", "opened", {"ri": "1"})
    cid = parse(dc09.build("ADM-CID", "0032", "1234", data="#1234|1401 01 005"))  # closing
    (decoded,) = dc09.decode_reports(cid, TS)
    (event,) = decoded.messages
    assert isinstance(event, Event)
    assert event.type is EventType.OTHER
    assert json.loads(event.payload)["code"] == "1401"


@pytest.mark.parametrize("data", ["#1234|XFA1", "#1234|N12", "#1234|N", "#1234|N^only text^"])
def test_sia_dcs_bad_data(data: str) -> None:
    with pytest.raises(dc09.Dc09Error) as info:
        dc09.reports(parse(dc09.build("SIA-DCS", "0001", "1234", data=data)))
    assert info.value.fault is dc09.Fault.BAD_DATA


def test_adm_cid_and_null() -> None:
    message = parse(dc09.build("ADM-CID", "0009", "1234", data="#1234|1101 01 015"))
    assert dc09.reports(message) == [dc09.Report("15", "1101", EventType.SOS)]
    restore = parse(dc09.build("ADM-CID", "0010", "1234", data="#1234|3101 01 015"))
    assert dc09.reports(restore)[0].meaning is EventType.RESTORE
    offline = parse(dc09.build("ADM-CID", "0011", "1234", data="#1234|1102 01 004"))
    assert dc09.reports(offline)[0].meaning is DeviceState.OFFLINE
    assert dc09.reports(parse(dc09.build("NULL", "0012", "1234"))) == []
    with pytest.raises(dc09.Dc09Error) as info:
        dc09.reports(parse(dc09.build("ADM-CID", "0013", "1234", data="#1234|banana")))
    assert info.value.fault is dc09.Fault.BAD_DATA


def test_decoded_events_carry_an_id_that_absorbs_repeats() -> None:
    message = parse(dc09.build("ADM-CID", "0009", "1234", data="#1234|1101 01 015", timestamp=TS))
    (decoded,) = dc09.decode_reports(message, TS + timedelta(seconds=2))
    assert decoded.address == dc09.address("1234", "015")
    (event,) = decoded.bind("pendant-1")
    assert isinstance(event, Event)
    assert event.ts == TS
    assert event.source == "sia"
    assert event.event_id == "sia-1234-0009-0-20261127"
    again = dc09.decode_reports(message, TS + timedelta(seconds=30))[0].bind("pendant-1")[0]
    assert isinstance(again, Event)
    assert again.dedup_key == event.dedup_key
    offline = parse(dc09.build("ADM-CID", "0011", "1234", data="#1234|1102 01 004"))
    (status,) = dc09.decode_reports(offline, TS)[0].bind("door-1")
    assert isinstance(status, Status)
    assert status.state is DeviceState.OFFLINE


# -- properties -------------------------------------------------------------------------------
safe_text = st.text(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/ |#^:-", max_size=60
)


@settings(max_examples=60)
@given(
    token=st.sampled_from(["SIA-DCS", "ADM-CID", "NULL"]),
    seq=st.integers(0, 9999).map(lambda n: f"{n:04d}"),
    account=st.text("0123456789ABCDEF", min_size=3, max_size=16),
    prefix=st.text("0123456789ABCDEF", min_size=1, max_size=6),
    receiver=st.none() | st.text("0123456789ABCDEF", min_size=1, max_size=6),
    data=safe_text,
    extended=st.lists(safe_text, max_size=2).map(tuple),
    encrypted=st.booleans(),
    decimal=st.booleans(),
)
def test_build_parse_round_trip(
    token: str,
    seq: str,
    account: str,
    prefix: str,
    receiver: str | None,
    data: str,
    extended: tuple[str, ...],
    encrypted: bool,
    decimal: bool,
) -> None:
    style = dc09.Style(decimal_length=decimal)
    key = KEY if encrypted else None
    timestamp = TS if encrypted else None
    frame = dc09.build(
        token,
        seq,
        account,
        prefix=prefix,
        receiver=receiver,
        data=data,
        extended=extended,
        timestamp=timestamp,
        key=key,
        style=style,
    )
    (inner,) = dc09.Dc09Framer().feed(frame)
    assert isinstance(inner, bytes)
    body, got_style = dc09.check_frame(inner, dc09.Tolerance(decimal_length=True))
    header, rest = dc09.parse_header(body, got_style)
    message = dc09.parse_content(header, rest, key)
    assert (header.token, header.seq, header.account, header.prefix) == (
        token,
        seq,
        account,
        prefix,
    )
    assert header.receiver == receiver
    assert header.encrypted == encrypted
    assert (message.data, message.extended, message.timestamp) == (data, extended, timestamp)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.booleans())
def test_arbitrary_bytes_never_raise_anything_else(data: bytes, tolerant: bool) -> None:
    tolerance = dc09.Tolerance(decimal_length=tolerant, binary_crc=tolerant)
    for item in dc09.Dc09Framer(binary_crc=tolerant).feed(b"\n" + data + b"\r"):
        if isinstance(item, Skipped):
            continue
        try:
            body, style = dc09.check_frame(item, tolerance)
            header, rest = dc09.parse_header(body, style)
            dc09.decode_reports(dc09.parse_content(header, rest, KEY), TS)
        except dc09.Dc09Error:
            pass


ascii_line = st.text(st.characters(codec="ascii", exclude_characters="\n\r"), max_size=120)
headers = st.sampled_from(
    ['"SIA-DCS"0001L0#1234[', '"ADM-CID"0002R1L0#1234[', '"*SIA-DCS"0003L0#1234[', '"NULL"0004L0#']
)


@settings(max_examples=300)
@given(
    st.one_of(
        ascii_line,
        st.builds("{}{}".format, headers.map(lambda h: h[1:]), ascii_line),
        st.builds(
            '*SIA-DCS"0005L0#1234[{}'.format,
            st.binary(min_size=16, max_size=64).map(lambda b: b.hex().upper()),
        ),
    )
)
def test_arbitrary_bodies_with_valid_crc_never_raise_anything_else(text: str) -> None:
    frame = dc09.frame('"' + text)
    with contextlib.suppress(dc09.Dc09Error):
        dc09.decode_reports(parse(frame, KEY), TS)
