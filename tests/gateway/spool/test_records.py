"""Spool records: every model round-trips through the JSON form; bad bodies are refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.outage import OutageNotice
from alerts.replies import Reply
from devices.models import (
    DeviceHealth,
    DeviceState,
    Event,
    EventType,
    PendingSighting,
    Reading,
    Status,
    Telemetry,
)
from gateway.spool import records as rec

ids = st.from_regex(r"\A[A-Za-z0-9_-]{1,16}\Z")
text = st.text(max_size=40)
times = st.datetimes(
    min_value=datetime(2000, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=8))]),
)
small = st.integers(min_value=-(2**40), max_value=2**40)
finite = st.floats(allow_nan=False, allow_infinity=False)

events = st.builds(
    Event,
    device_id=ids,
    type=st.sampled_from(EventType),
    ts=times,
    received_at=times,
    event_id=st.none() | text,
    seq=st.none() | small,
    battery=st.none() | st.integers(0, 100),
    source=st.sampled_from(["mqtt", "serial", "sia", "zigbee2mqtt"]),
    payload=text,
    seq_window=st.sampled_from([86400, 300]),
)
readings = st.builds(Reading, device_id=ids, metric=text, ts=times, value=finite)
healths = st.builds(
    DeviceHealth,
    device_id=ids,
    last_seen=times,
    battery=st.none() | st.integers(0, 100),
    online=st.none() | st.booleans(),
    fw=st.none() | text,
    rssi=st.none() | finite,
)
telemetry = st.builds(
    Telemetry,
    device_id=ids,
    ts=times,
    received_at=times,
    readings=st.lists(readings, max_size=3).map(tuple),
    seq=st.none() | small,
    source=text,
)
statuses = st.builds(
    Status,
    device_id=ids,
    state=st.sampled_from(DeviceState),
    ts=times,
    fw=st.none() | text,
    battery=st.none() | st.integers(0, 100),
    source=text,
)
sightings = st.builds(
    PendingSighting,
    device_id=ids,
    ts=times,
    kind=text,
    payload=text,
    event_type=st.none() | st.sampled_from(EventType),
)
notices = st.builds(
    OutageNotice,
    event_key=text,
    alert_id=text,
    at=times,
    step=st.integers(0, 5),
    targets=st.lists(text, max_size=3).map(tuple),
    reached=st.integers(0, 5),
)
records = st.one_of(
    st.builds(rec.SpooledEvent, event=events, checked=st.booleans()),
    st.builds(
        rec.SpooledReadings,
        readings=st.lists(readings, max_size=5).map(tuple),
        health=st.lists(healths, max_size=3).map(tuple),
        unchecked=st.lists(telemetry | statuses, max_size=3).map(tuple),
    ),
    st.builds(rec.SpooledPending, sightings=st.lists(sightings, min_size=1, max_size=3).map(tuple)),
    st.builds(
        rec.SpooledReply,
        reply=st.builds(
            Reply,
            responder_id=ids,
            alert_id=text,
            action=st.sampled_from(["accept", "decline", "arrived", "resolve"]),
        ),
    ),
    st.builds(rec.SpooledNotice, notice=notices),
)


@given(records)
def test_every_record_round_trips(record: rec.Record) -> None:
    back = rec.loads(rec.dumps(record))
    assert back == record
    # Instants keep their offset too (equality of aware datetimes alone would not show it).
    assert rec.dumps(back) == rec.dumps(record)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"not json", "bad spool record"),
        (b"[1, 2]", "JSON object"),
        (b'{"k": "mystery"}', "unknown record kind"),
        (b'{"k": "event"}', "bad spool record"),
        (b'{"k": "pending", "sightings": [{"device_id": "d"}]}', "bad spool record"),
        (b'{"k": "reply", "responder_id": "v", "alert_id": "a", "action": "steal"}', "action"),
        (
            b'{"k": "notice", "notice": {"event_key": "k", "alert_id": "a", "at": '
            b'"2024-01-01T00:00:00", "step": 0, "targets": [], "reached": 0}}',
            "naive",
        ),
    ],
)
def test_bad_bodies_are_refused_with_a_reason(body: bytes, why: str) -> None:
    with pytest.raises(rec.SpoolFormatError, match=why):
        rec.loads(body)


def test_only_readings_and_pending_may_be_refused_for_space() -> None:
    now = datetime.now(UTC)
    event = Event("d", EventType.SOS, now, now)
    assert rec.is_event(rec.SpooledEvent(event))
    assert rec.is_event(rec.SpooledReply(Reply("v", "a", "accept")))
    assert not rec.is_event(rec.SpooledReadings())
    assert not rec.is_event(rec.SpooledPending((PendingSighting("d", now, "event", "{}"),)))
