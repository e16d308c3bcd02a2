"""Ademco Contact ID (SIA DC-05): ``ACCT MT QXYZ GG CCC S``.

ACCT account (4 hex digits), MT message type (18 or 98), Q qualifier (1 new event, 3 restore,
6 previously reported condition still present), XYZ event code, GG group/partition, CCC zone
or user, S checksum (digit values, 0 counting as 10, sum to a multiple of 15).

Inside SIA DC-09 (token ``ADM-CID``) the account travels in the DC-09 header and the data is
the short form ``QXYZ GG CCC`` (``parse_short``); over a telephone line the whole 16 digits
come with the checksum (``parse_full``).

Mapped to SPEC events (``meaning``), from the codes panels and social-alarm units send:
100 medical and 101 personal emergency → ``sos``; 120–123 panic/duress → ``sos``;
110 fire, 111 smoke → ``smoke``; 114 heat, 158 high temperature → ``high_temp``; 151 gas →
``gas``; 154 water leak → ``water_leak``; 162 carbon monoxide → ``co``; 137/144/145/383 tamper
→ ``tamper``; 302 low system battery, 384 RF low battery → ``low_battery``; 406 cancel →
``cancel``; 102 fail to report → the zone's device goes offline (restore: online again);
602/603 periodic/manual test → no event (the message itself proves the link alive).
A restore (qualifier 3) of any alarm becomes ``restore``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum

from devices.codec import Rejected, RejectReason
from devices.models import DeviceState, EventType


class Qualifier(IntEnum):
    NEW = 1
    RESTORE = 3
    STILL_PRESENT = 6


_ALARMS: dict[int, EventType] = {
    100: EventType.SOS,  # medical
    101: EventType.SOS,  # personal emergency (pendant)
    110: EventType.SMOKE,  # fire
    111: EventType.SMOKE,
    114: EventType.HIGH_TEMP,  # heat
    120: EventType.SOS,  # panic
    121: EventType.SOS,  # duress
    122: EventType.SOS,  # silent panic
    123: EventType.SOS,  # audible panic
    137: EventType.TAMPER,
    144: EventType.TAMPER,  # sensor tamper
    145: EventType.TAMPER,  # expansion module tamper
    151: EventType.GAS,
    154: EventType.WATER_LEAK,
    158: EventType.HIGH_TEMP,
    162: EventType.CO,
    302: EventType.LOW_BATTERY,  # low system battery
    383: EventType.TAMPER,  # sensor tamper
    384: EventType.LOW_BATTERY,  # RF transmitter low battery
    406: EventType.CANCEL,
}
FAIL_TO_REPORT = 102
TESTS = frozenset({602, 603})

# Digit values for the checksum: 0 (also written A) counts 10; B–F are 11–15.
_VALUES = {**{str(d): d for d in range(1, 10)}, "0": 10, "A": 10}
_VALUES.update({c: 11 + i for i, c in enumerate("BCDEF")})

_SHORT = re.compile(r"\A([136])([0-9A-F]{3}) ?([0-9A-F]{2}) ?([0-9A-F]{3})\Z")
_FULL = re.compile(
    r"\A([0-9A-F]{4}) ?(18|98) ?([136])([0-9A-F]{3}) ?([0-9A-F]{2}) ?([0-9A-F]{3}) ?([0-9A-F])\Z"
)


@dataclass(frozen=True, slots=True)
class ContactId:
    qualifier: Qualifier
    code: int
    group: str
    zone: str  # as sent, e.g. "015"; zone 000 is the panel itself
    account: str | None = None

    @property
    def restore(self) -> bool:
        return self.qualifier is Qualifier.RESTORE

    def text(self) -> str:
        return f"{self.qualifier.value}{self.code:03d} {self.group} {self.zone}"


def checksum_ok(digits: str) -> bool:
    """True when the 16 digits' values sum to a multiple of 15."""
    try:
        return sum(_VALUES[c] for c in digits) % 15 == 0
    except KeyError:
        return False


def _code(text: str) -> int:
    if not text.isdigit():
        raise Rejected(RejectReason.INVALID_PAYLOAD, f"event code {text!r} is not decimal")
    return int(text)


def parse_short(text: str, account: str | None = None) -> ContactId:
    """``QXYZ GG CCC`` (the data of a DC-09 ``ADM-CID`` message)."""
    m = _SHORT.match(text.strip().upper())
    if m is None:
        raise Rejected(RejectReason.INVALID_PAYLOAD, f"not Contact ID QXYZ GG CCC: {text[:40]!r}")
    q, code, group, zone = m.groups()
    return ContactId(Qualifier(int(q)), _code(code), group, zone, account)


def parse_full(text: str) -> ContactId:
    """``ACCT MT QXYZ GG CCC S`` with its checksum verified."""
    cleaned = text.strip().upper()
    m = _FULL.match(cleaned)
    if m is None:
        raise Rejected(
            RejectReason.INVALID_PAYLOAD, f"not Contact ID ACCT MT QXYZ GG CCC S: {text[:40]!r}"
        )
    if not checksum_ok(cleaned.replace(" ", "")):
        raise Rejected(RejectReason.INVALID_PAYLOAD, f"Contact ID checksum wrong in {text!r}")
    account, _mt, q, code, group, zone, _s = m.groups()
    return ContactId(Qualifier(int(q)), _code(code), group, zone, account)


def checksum_digit(digits15: str) -> str:
    """The 16th digit that makes ``digits15`` a valid message (F for a sum already ≡ 0)."""
    rest = sum(_VALUES[c] for c in digits15.upper()) % 15
    need = (15 - rest) % 15 or 15
    return "0" if need == 10 else "0123456789ABCDEF"[need]


def meaning(cid: ContactId) -> EventType | DeviceState | None:
    """The SPEC event (or device state) a Contact ID message stands for; ``None`` for tests
    and codes with no SPEC meaning (acknowledged and counted, not stored as events)."""
    if cid.code == FAIL_TO_REPORT:
        return DeviceState.ONLINE if cid.restore else DeviceState.OFFLINE
    if cid.code in TESTS:
        return None
    alarm = _ALARMS.get(cid.code)
    if alarm is None:
        return None
    if cid.restore:
        # A restore of "cancel" or of a low battery is still a restore: the sensor is normal.
        return EventType.RESTORE
    return alarm
