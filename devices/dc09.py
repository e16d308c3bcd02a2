"""SIA DC-09 (alarm event reporting over IP): framing, checks, AES, responses, meaning.

A message on the wire::

    LF  CRC(4 hex)  0LLL(length, hex)  "ID"  seq(4)  [Rrcvr]  Lpref  #acct  [data]...  [_ts]  CR

CRC-16/ARC and the length cover ``"ID"`` up to (not including) CR. The ID token is
``SIA-DCS``, ``ADM-CID`` or ``NULL`` (link test) uplink and ``ACK``/``NAK``/``DUH`` downlink; a
``*`` before the token means the part after the first ``[`` is AES-CBC encrypted (zero IV,
128/192/256-bit key per account) and sent as hex: it decrypts to
``pad | data ] [extended] ... _timestamp``, with 1–16 pad bytes that make it a multiple of 16
bytes. Timestamps (``_HH:MM:SS,MM-DD-YYYY``, UTC) are mandatory when encrypted.

Be strict by default, tolerant by config (FIELD_NOTES): some panels send the length in
decimal, a few send the CRC as two binary bytes; ``Tolerance`` accepts either, and the answer
is built in the same style as the question.

``SIA-DCS`` events covered (data ``#acct|Nri1/FA015``; the number after the code is the zone):
FA fire, GA gas, WA water, KA heat, QA emergency, MA medical, PA panic, HA hold-up, TA tamper,
YT system battery, XT transmitter battery — and their restores (FH/FR, GH/GR, WH/WR, KH/KR,
QH/QR, MH/MR, PH/PR, HH/HR, TR, YR, XR) as ``restore``; RP/RX tests carry no event. Other codes
(burglary, openings/closings, troubles) are acknowledged and counted, not stored as events.
``ADM-CID`` data is Contact ID (``devices.contact_id``).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import orjson
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from devices import contact_id
from devices.codec import Rejected
from devices.codecs import Decoded, DeviceAddress, Skipped
from devices.models import DeviceMessage, DeviceState, Event, EventType, Status

SOURCE = "sia"
LF = 0x0A
CR = 0x0D
MAX_FRAME = 9 + 0xFFF  # CRC + length field + the longest body a 3-digit length can count
BLOCK = 16
_PAD_FORBIDDEN = frozenset(b"|[]")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# A device clock further off than this is not trusted for the stored event time.
MAX_CLOCK_SKEW = timedelta(hours=1)


class Fault(StrEnum):
    """Why a message was refused; each is a metrics label and decides the answer."""

    BAD_CRC = "bad_crc"  # NAK
    BAD_LENGTH = "bad_length"  # NAK
    BAD_FORMAT = "bad_format"  # NAK
    BAD_TIMESTAMP = "bad_timestamp"  # NAK
    UNKNOWN_ACCOUNT = "unknown_account"  # DUH
    UNSUPPORTED = "unsupported"  # DUH: a token we do not take, or encryption we cannot undo
    BAD_DATA = "bad_data"  # DUH: a supported token whose data is not what it should be


NAK_FAULTS = frozenset({Fault.BAD_CRC, Fault.BAD_LENGTH, Fault.BAD_FORMAT, Fault.BAD_TIMESTAMP})


class Dc09Error(Exception):
    def __init__(self, fault: Fault, detail: str, header: Header | None = None) -> None:
        super().__init__(f"{fault.value}: {detail}")
        self.fault = fault
        self.detail = detail
        self.header = header  # known when the header parsed (a DUH echoes it)


@dataclass(frozen=True, slots=True)
class Tolerance:
    decimal_length: bool = False
    binary_crc: bool = False


@dataclass(frozen=True, slots=True)
class Style:
    """How the sender wrote CRC and length, so the answer is written the same way."""

    decimal_length: bool = False
    binary_crc: bool = False


@dataclass(frozen=True, slots=True)
class Header:
    token: str  # without quotes and without the '*', e.g. "SIA-DCS"
    encrypted: bool
    seq: str  # four digits, echoed as sent
    receiver: str | None  # hex digits after R
    prefix: str  # hex digits after L
    account: str  # hex digits after #, upper case ("" for the A0 of a NAK)
    style: Style = field(default_factory=Style)


@dataclass(frozen=True, slots=True)
class Message:
    header: Header
    data: str  # inside the first [...] (decrypted), without the brackets
    extended: tuple[str, ...]
    timestamp: datetime | None
    text: str  # the body as understood (decrypted where it was encrypted)


# -- CRC-16/ARC -------------------------------------------------------------------------------
def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_arc(data: bytes) -> int:
    """CRC-16/ARC: poly 0x8005 reflected (0xA001), init 0, no final xor."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


# -- framing ----------------------------------------------------------------------------------
class Dc09Framer:
    """Bytes of a TCP stream in, frames (between LF and CR) out, garbage counted.

    With ``binary_crc`` a frame whose CRC is two raw bytes is framed by its length field
    instead, since those bytes may themselves be LF or CR.
    """

    def __init__(self, *, binary_crc: bool = False, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._binary_crc = binary_crc
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes | Skipped]:
        self._buf += data
        out: list[bytes | Skipped] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list[bytes | Skipped]) -> bool:
        buf = self._buf
        start = buf.find(LF)
        if start < 0:
            if buf:
                out.append(Skipped("garbage", bytes(buf)))
                buf.clear()
            return False
        if start > 0:
            out.append(Skipped("garbage", bytes(buf[:start])))
            del buf[:start]
        if self._binary_crc and (size := _binary_crc_size(buf)) is not None:
            if len(buf) < size:
                return False
            if buf[size - 1] == CR:
                out.append(bytes(buf[1 : size - 1]))
                del buf[:size]
                return True
        end = buf.find(CR, 1)
        nxt = buf.find(LF, 1)
        if nxt > 0 and (end < 0 or nxt < end):
            # A new LF before this frame's CR: the frame was cut off; start again there.
            out.append(Skipped("truncated", bytes(buf[:nxt])))
            del buf[:nxt]
            return True
        if end < 0:
            if len(buf) > self._max:
                out.append(Skipped("oversize", bytes(buf)))
                buf.clear()
            return False
        out.append(bytes(buf[1:end]))
        del buf[: end + 1]
        return True


def _binary_crc_size(buf: bytearray) -> int | None:
    """Whole size (LF to CR) of a frame that starts with a binary CRC, judged from its length
    field; None when the start does not look like one (or is the ASCII form)."""
    if len(buf) < 8:
        return None
    ascii_form = set(buf[1:9]) <= _HEX and len(buf) > 9 and buf[9] == ord('"')
    length = bytes(buf[3:7])
    if ascii_form or length[:1] != b"0" or not set(length) <= _HEX or buf[7] != ord('"'):
        return None
    return 1 + 2 + 4 + int(length, 16) + 1


# -- AES --------------------------------------------------------------------------------------
def parse_key(text: str) -> bytes:
    """A per-account key: 32, 48 or 64 hex digits (AES-128/192/256)."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise ValueError("an AES key is 32, 48 or 64 hex digits") from None
    if len(key) not in (16, 24, 32):
        raise ValueError(f"an AES key is 16, 24 or 32 bytes, got {len(key)}")
    return key


def _cipher(key: bytes) -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(key), modes.CBC(bytes(BLOCK)))


def encrypt_region(plain: str, key: bytes, pad: bytes | None = None) -> str:
    """``plain`` (what follows ``pad|``) padded in front and encrypted, as upper-case hex."""
    body = b"|" + plain.encode("ascii")
    if pad is None:
        need = BLOCK - len(body) % BLOCK  # 1..16: a full block when already aligned
        pad = bytes(_pad_bytes(need))
    if (len(pad) + len(body)) % BLOCK or not pad or _PAD_FORBIDDEN & set(pad):
        raise ValueError("pad must be 1-16 bytes without | [ ] that align the region to 16")
    encryptor = _cipher(key).encryptor()
    return (encryptor.update(pad + body) + encryptor.finalize()).hex().upper()


def _pad_bytes(count: int) -> Iterator[int]:
    produced = 0
    while produced < count:
        byte = secrets.randbelow(256)
        if byte not in _PAD_FORBIDDEN:
            produced += 1
            yield byte


def decrypt_region(hex_text: str, key: bytes) -> str:
    """The plaintext after ``pad|``; raises Dc09Error when it cannot be what was sent."""
    try:
        cipher_bytes = bytes.fromhex(hex_text)
    except ValueError:
        raise Dc09Error(Fault.BAD_FORMAT, "encrypted region is not hex") from None
    if not cipher_bytes or len(cipher_bytes) % BLOCK:
        raise Dc09Error(Fault.BAD_FORMAT, "encrypted region is not whole AES blocks")
    decryptor = _cipher(key).decryptor()
    plain = decryptor.update(cipher_bytes) + decryptor.finalize()
    # Pads of up to 32 bytes are accepted: some panels pad to the key size, not the block.
    bar = plain.find(b"|")
    if bar < 0 or bar > 2 * BLOCK or _PAD_FORBIDDEN & set(plain[:bar]):
        raise Dc09Error(Fault.UNSUPPORTED, "cannot decrypt (wrong key?)")
    try:
        return plain[bar + 1 :].decode("ascii")
    except UnicodeDecodeError:
        raise Dc09Error(Fault.UNSUPPORTED, "cannot decrypt (wrong key?)") from None


# -- parsing ----------------------------------------------------------------------------------
_HEADER = re.compile(
    r'"(\*?)([A-Z0-9-]{1,16})"(\d{4})(?:R([0-9A-F]{1,6}))?L([0-9A-F]{1,6})(?:#([0-9A-F]{3,16})|A0)\['
)
_BLOCKS = re.compile(r"\[([^\[\]]*)\]")
_TIMESTAMP = re.compile(r"_(\d{2}):(\d{2}):(\d{2}),(\d{2})-(\d{2})-(\d{4})")


def check_frame(frame: bytes, tolerance: Tolerance = Tolerance()) -> tuple[str, Style]:
    """Verify CRC and length of one frame (LF and CR already stripped); return its body."""
    candidates = [(4, False)]
    if tolerance.binary_crc:
        candidates.append((2, True))
    last: Dc09Error | None = None
    for crc_len, binary in candidates:
        try:
            return _check(frame, crc_len, binary, tolerance)
        except Dc09Error as exc:
            last = exc if last is None else last
    assert last is not None
    raise last


def _check(frame: bytes, crc_len: int, binary: bool, tolerance: Tolerance) -> tuple[str, Style]:
    head = frame[: crc_len + 4]
    body = frame[crc_len + 4 :]
    if len(head) < crc_len + 4 or not body.startswith(b'"'):
        raise Dc09Error(Fault.BAD_FORMAT, "no CRC, length and quoted ID token")
    crc_field, length_field = head[:crc_len], head[crc_len:]
    if not set(length_field) <= _HEX or length_field[:1] != b"0":
        raise Dc09Error(Fault.BAD_FORMAT, f"length field {length_field!r} is not 0LLL")
    if binary:
        sent_crc = int.from_bytes(crc_field, "big")
    elif set(crc_field) <= _HEX:
        sent_crc = int(crc_field, 16)
    else:
        raise Dc09Error(Fault.BAD_FORMAT, f"CRC field {crc_field!r} is not hex")
    decimal = False
    if int(length_field, 16) != len(body):
        decimal = (
            tolerance.decimal_length
            and length_field.isdigit()
            and int(length_field, 10) == len(body)
        )
        if not decimal:
            raise Dc09Error(
                Fault.BAD_LENGTH, f"length field {length_field.decode()} but {len(body)} bytes"
            )
    if sent_crc != crc16_arc(body):
        raise Dc09Error(Fault.BAD_CRC, f"CRC {sent_crc:04X} but computed {crc16_arc(body):04X}")
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise Dc09Error(Fault.BAD_FORMAT, "body is not ASCII") from None
    return text, Style(decimal_length=decimal, binary_crc=binary)


def parse_header(body: str, style: Style = Style()) -> tuple[Header, str]:
    """The header of a checked body, and what follows its ``[``."""
    m = _HEADER.match(body.upper()) if body.isascii() else None
    if m is None:
        raise Dc09Error(Fault.BAD_FORMAT, f"no DC-09 header in {body[:48]!r}")
    star, token, seq, receiver, prefix, account = m.groups()
    header = Header(token, star == "*", seq, receiver, prefix, account or "", style)
    return header, body[m.end() :]


def parse_content(header: Header, rest: str, key: bytes | None) -> Message:
    """Data blocks and timestamp of a message, decrypting first when it is encrypted."""
    if header.encrypted:
        if key is None:
            raise Dc09Error(Fault.UNSUPPORTED, "encrypted, but no key for this account", header)
        try:
            rest = decrypt_region(rest, key)
        except Dc09Error as exc:
            raise Dc09Error(exc.fault, exc.detail, header) from None
    text = "[" + rest
    blocks: list[str] = []
    pos = 0
    while (m := _BLOCKS.match(text, pos)) is not None:
        blocks.append(m.group(1))
        pos = m.end()
    if not blocks:
        raise Dc09Error(Fault.BAD_FORMAT, "no [data] block", header)
    timestamp = None
    if pos < len(text):
        t = _TIMESTAMP.fullmatch(text, pos)
        if t is None:
            raise Dc09Error(Fault.BAD_FORMAT, f"unexpected {text[pos : pos + 32]!r}", header)
        timestamp = _timestamp(t, header)
    if header.encrypted and timestamp is None:
        raise Dc09Error(Fault.BAD_TIMESTAMP, "encrypted message without a timestamp", header)
    return Message(header, blocks[0], tuple(blocks[1:]), timestamp, text)


def _timestamp(m: re.Match[str], header: Header) -> datetime:
    hh, mi, ss, mo, dd, yyyy = (int(g) for g in m.groups())
    try:
        return datetime(yyyy, mo, dd, hh, mi, ss, tzinfo=UTC)
    except ValueError:
        raise Dc09Error(
            Fault.BAD_TIMESTAMP, f"impossible timestamp {m.group(0)!r}", header
        ) from None


def timestamp_ok(ts: datetime, now: datetime, *, past: float, future: float) -> bool:
    """Within the receiver's window: at most ``past`` s old and ``future`` s ahead."""
    return now - timedelta(seconds=past) <= ts <= now + timedelta(seconds=future)


def format_timestamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("_%H:%M:%S,%m-%d-%Y")


# -- building (responses, and messages for tests and simulators) --------------------------------
def frame(body: str, style: Style = Style()) -> bytes:
    """LF, CRC, length, body, CR."""
    raw = body.encode("ascii")
    crc = crc16_arc(raw)
    crc_field = crc.to_bytes(2, "big") if style.binary_crc else f"{crc:04X}".encode()
    length = f"{len(raw):04d}" if style.decimal_length else f"{len(raw):04X}"
    return bytes([LF]) + crc_field + length.encode() + raw + bytes([CR])


def build(
    token: str,
    seq: str,
    account: str,
    *,
    prefix: str = "0",
    receiver: str | None = None,
    data: str = "",
    extended: tuple[str, ...] = (),
    timestamp: datetime | None = None,
    key: bytes | None = None,
    pad: bytes | None = None,
    style: Style = Style(),
) -> bytes:
    """One message; with ``key`` the region after ``[`` is encrypted (needs a timestamp)."""
    head = f'"{"*" if key else ""}{token}"{seq}{"R" + receiver if receiver else ""}L{prefix}'
    head += f"#{account}" if account else "A0"
    region = data + "]" + "".join(f"[{x}]" for x in extended)
    if timestamp is not None:
        region += format_timestamp(timestamp)
    if key is not None:
        if timestamp is None:
            raise ValueError("an encrypted message needs a timestamp")
        return frame(head + "[" + encrypt_region(region, key, pad), style)
    return frame(head + "[" + region, style)


def ack(header: Header, key: bytes | None, now: datetime) -> bytes:
    """``ACK`` echoing seq, receiver, prefix and account; encrypted when the message was."""
    return build(
        "ACK",
        header.seq,
        header.account,
        prefix=header.prefix,
        receiver=header.receiver,
        timestamp=now if header.encrypted else None,
        key=key if header.encrypted else None,
        style=header.style,
    )


def duh(header: Header) -> bytes:
    return build(
        "DUH",
        header.seq,
        header.account,
        prefix=header.prefix,
        receiver=header.receiver,
        style=header.style,
    )


def nak(now: datetime, style: Style = Style()) -> bytes:
    """``NAK`` with the receiver's time, so a panel with a drifting clock can correct it."""
    return build("NAK", "0000", "", prefix="0", receiver="0", timestamp=now, style=style)


# -- meaning ----------------------------------------------------------------------------------
_SIA_ALARMS: dict[str, EventType] = {
    "FA": EventType.SMOKE,
    "GA": EventType.GAS,
    "WA": EventType.WATER_LEAK,
    "KA": EventType.HIGH_TEMP,
    "QA": EventType.SOS,
    "MA": EventType.SOS,
    "PA": EventType.SOS,
    "HA": EventType.SOS,
    "TA": EventType.TAMPER,
    "YT": EventType.LOW_BATTERY,
    "XT": EventType.LOW_BATTERY,
}
_SIA_RESTORES = frozenset(
    {"FH", "FR", "GH", "GR", "WH", "WR", "KH", "KR", "QH", "QR", "MH", "MR", "PH", "PR"}
    | {"HH", "HR", "TR", "YR", "XR"}
)
# SIA DC-04 data after the leading N: event fields (two capitals and a zone number) and
# modifier fields (two lowercase letters and a value: ri area, pi peripheral, id user,
# da date, ti time, …), separated by '/' or simply one after the other, with free text in
# carets (^Kitchen / hall^) that belongs to the field before it; '|' ends the fields (what
# follows, like |A…, is free text too).
_SIA_MODIFIER = re.compile(r"([a-z]{2})([0-9:.,-]*)")
_SIA_EVENT = re.compile(r"([A-Z]{2})([0-9]*)")


@dataclass(frozen=True, slots=True)
class Report:
    """One reported condition: what it means and which zone it is about. ``meaning`` None:
    a well-formed code the gateway has no SPEC meaning for (stored as an ``other`` event)."""

    zone: str  # normalised: "15" for "015"; "" when the message names none
    code: str  # "FA" or "1111" (Contact ID qualifier + code)
    meaning: EventType | DeviceState | None
    text: str = ""  # the ^free text^ a panel sent with it
    modifiers: tuple[tuple[str, str], ...] = ()  # ("ri", "1"), ("pi", "003"), ("ti", "12:34")


def normalise_zone(zone: str | None) -> str:
    """``"015"`` and ``"15"`` name one zone; ``""`` is the whole account (panel-level)."""
    if zone is None:
        return ""
    zone = zone.strip().upper()
    return str(int(zone)) if zone.isdigit() else zone


def address(account: str, zone: str | None) -> DeviceAddress:
    """The registry address of an account's zone (``sia_account``, ``sia_zone``)."""
    return DeviceAddress(SOURCE, (account.strip().upper(), normalise_zone(zone)))


def account_address(where: DeviceAddress) -> DeviceAddress | None:
    """For a zone's address, the address of its whole account (a device registered with an
    account and no zone takes all of that account's zones); None for anything else."""
    if where.source != SOURCE or len(where.key) != 2 or not where.key[1]:
        return None
    return DeviceAddress(SOURCE, (where.key[0], ""))


def _strip_account(data: str) -> str:
    if data.startswith("#") and "|" in data:
        return data.split("|", 1)[1]
    return data


def reports(message: Message) -> list[Report]:
    """What a checked message reports; ``[]`` for a link test. Raises Dc09Error(BAD_DATA)
    when a supported token carries data that is not in its format."""
    token = message.header.token
    data = _strip_account(message.data)
    if token == "NULL":
        return []
    if token == "ADM-CID":
        try:
            cid = contact_id.parse_short(data, message.header.account)
        except Rejected as exc:
            raise Dc09Error(Fault.BAD_DATA, exc.detail, message.header) from None
        code = f"{cid.qualifier.value}{cid.code:03d}"
        return [Report(normalise_zone(cid.zone), code, contact_id.meaning(cid))]
    if token == "SIA-DCS":
        return _sia_reports(data, message.header)
    raise Dc09Error(Fault.UNSUPPORTED, f"token {token!r} not supported", message.header)


def _sia_reports(data: str, header: Header) -> list[Report]:
    if not data:
        return []  # an empty block: nothing to report (acknowledged like a link test)
    if data[:1] not in ("N", "O"):
        raise Dc09Error(Fault.BAD_DATA, f"SIA data {data[:32]!r} does not start with N", header)
    fields, texts = _without_texts(data[1:])
    found: list[tuple[int, Report]] = []  # (where it starts in ``fields``, the report)
    modifiers: dict[str, str] = {}
    pos = 0
    while pos < len(fields):
        if fields[pos] in "/ ":
            pos += 1
        elif (mod := _SIA_MODIFIER.match(fields, pos)) is not None:
            modifiers[mod.group(1)] = mod.group(2)  # applies to the events after it
            pos = mod.end()
        elif (event := _SIA_EVENT.match(fields, pos)) is not None:
            code, zone = event.groups()
            meaning: EventType | None = _SIA_ALARMS.get(code)
            if code in _SIA_RESTORES:
                meaning = EventType.RESTORE
            report = Report(normalise_zone(zone), code, meaning, "", tuple(modifiers.items()))
            found.append((pos, report))
            pos = event.end()
        else:
            raise Dc09Error(Fault.BAD_DATA, f"SIA field at {fields[pos : pos + 16]!r}", header)
    if not found:
        raise Dc09Error(Fault.BAD_DATA, "SIA data carries no event code", header)
    out = [report for _, report in found]
    for at, text in texts:
        # The event the text stands in or after; text before any event belongs to the first.
        index = max((i for i, (start, _) in enumerate(found) if start < at), default=0)
        joined = f"{out[index].text} {text}".strip()
        out[index] = dataclasses.replace(out[index], text=joined)
    return out


def _without_texts(body: str) -> tuple[str, list[tuple[int, str]]]:
    """The fields with every ^free text^ taken out (it may hold '/', '|' or anything), each
    text with the position it stood at; '|' outside a text ends the fields."""
    fields: list[str] = []
    texts: list[tuple[int, str]] = []
    length = 0
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char == "^":
            end = body.find("^", pos + 1)
            end = len(body) if end < 0 else end  # unterminated: text to the end
            texts.append((length, body[pos + 1 : end]))
            pos = end + 1
        elif char == "|":
            break
        else:
            fields.append(char)
            length += 1
            pos += 1
    return "".join(fields), texts


def decode_reports(message: Message, received_at: datetime) -> list[Decoded]:
    """Each report as a typed message for its (account, zone) address: a SPEC event, a device
    state, or — for a well-formed code with no SPEC meaning (an opening, a test) — an event
    of type ``other`` carrying the raw code and text, so every report a panel sends is kept.

    Events get an id from account, sequence number, position and day, so a panel that
    repeats a message it got no ACK for is stored once.
    """
    header = message.header
    ts = message.timestamp
    if ts is None or abs(ts - received_at) > MAX_CLOCK_SKEW:
        ts = received_at
    out: list[Decoded] = []
    for index, report in enumerate(reports(message)):
        where = address(header.account, report.zone)
        device_id = where.pending_id()
        payload = orjson.dumps(
            {
                "token": header.token,
                "account": header.account,
                "seq": header.seq,
                "zone": report.zone,
                "code": report.code,
                "text": report.text or None,
                "modifiers": dict(report.modifiers) or None,
                "encrypted": header.encrypted,
                "message": message.text,
            }
        ).decode()
        msg: DeviceMessage
        if isinstance(report.meaning, DeviceState):
            msg = Status(device_id, report.meaning, ts, source=SOURCE)
        else:
            msg = Event(
                device_id=device_id,
                type=report.meaning or EventType.OTHER,
                ts=ts,
                received_at=received_at,
                event_id=f"sia-{header.account}-{header.seq}-{index}-{ts:%Y%m%d}",
                source=SOURCE,
                payload=payload,
            )
        out.append(Decoded(where, (msg,), payload))
    return out
