"""Contact ID: both forms, the checksum, and the mapping of FIELD_NOTES codes to SPEC events."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.codec import Rejected
from devices.contact_id import (
    ContactId,
    Qualifier,
    checksum_digit,
    checksum_ok,
    meaning,
    parse_full,
    parse_short,
)
from devices.models import DeviceState, EventType

VALUES = {**{str(d): d for d in range(1, 10)}, "0": 10, "B": 11, "C": 12, "D": 13, "E": 14}
VALUES["F"] = 15


def test_checksum_from_the_definition() -> None:
    # 1234 18 1131 01 015: digit values (0 counts 10) sum to 52; 8 more makes 60 = 4 x 15.
    assert sum(VALUES[c] for c in "123418113101015") == 52
    assert checksum_digit("123418113101015") == "8"
    assert checksum_ok("1234181131010158")
    cid = parse_full("1234 18 1131 01 015 8")
    assert cid == ContactId(Qualifier.NEW, 131, "01", "015", "1234")
    # A sum already a multiple of 15 takes F (15), never 0 (which counts 10).
    assert checksum_digit("555500000000000".replace("0", "5")) == "F"


def test_bad_checksum_is_rejected() -> None:
    with pytest.raises(Rejected):
        parse_full("1234 18 1131 01 015 1")


def test_short_form_of_dc09() -> None:
    assert parse_short("1110 01 003") == ContactId(Qualifier.NEW, 110, "01", "003")
    assert parse_short("3101 00 012", "5678").restore
    assert parse_short("160201000").code == 602  # spaces are optional


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1100 01 001", EventType.SOS),  # medical
        ("1101 01 001", EventType.SOS),  # personal emergency
        ("1110 01 002", EventType.SMOKE),  # fire
        ("1111 01 002", EventType.SMOKE),
        ("1151 01 003", EventType.GAS),
        ("1154 01 004", EventType.WATER_LEAK),
        ("1158 01 005", EventType.HIGH_TEMP),
        ("1162 01 006", EventType.CO),
        ("1302 01 000", EventType.LOW_BATTERY),
        ("1384 01 007", EventType.LOW_BATTERY),
        ("6111 01 002", EventType.SMOKE),  # still present: joins the active alert
        ("3111 01 002", EventType.RESTORE),
        ("3101 01 001", EventType.RESTORE),
        ("1102 01 007", DeviceState.OFFLINE),  # fail to report
        ("3102 01 007", DeviceState.ONLINE),
        ("1602 00 000", None),  # periodic test
        ("1401 01 001", None),  # open/close by user: no SPEC event
    ],
)
def test_field_notes_codes(text: str, expected: EventType | DeviceState | None) -> None:
    assert meaning(parse_short(text)) == expected


@pytest.mark.parametrize(
    "text", ["", "1110 01", "2110 01 003", "1ABC 01 003", "1110-01-003", "11100100３"]
)
def test_malformed_is_rejected(text: str) -> None:
    with pytest.raises(Rejected):
        parse_short(text)


@given(
    st.text("0123456789BCDEF", min_size=4, max_size=4),
    st.sampled_from(["18", "98"]),
    st.sampled_from([1, 3, 6]),
    st.integers(0, 999),
    st.text("0123456789", min_size=2, max_size=2),
    st.text("0123456789", min_size=3, max_size=3),
)
def test_full_round_trip(account: str, mt: str, q: int, code: int, group: str, zone: str) -> None:
    body = f"{account}{mt}{q}{code:03d}{group}{zone}"
    text = body + checksum_digit(body)
    assert checksum_ok(text)
    assert parse_full(text) == ContactId(Qualifier(q), code, group, zone, account)


@given(st.text(max_size=40))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    for parse in (parse_short, parse_full):
        with contextlib.suppress(Rejected):
            meaning(parse(text))
