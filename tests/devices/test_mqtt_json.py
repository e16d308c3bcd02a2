"""The native MQTT JSON codec: what devices send, and every way they get it wrong."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from devices import mqtt_json
from devices.codec import Rejected, RejectReason
from devices.models import DeviceState, Event, EventType, Status, Telemetry
from devices.mqtt_json import Kind, Topic, decode, parse_topic

NOW = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
LIMIT = 4096


def _decode(kind: Kind, payload: bytes | str, device: str = "btn-1") -> object:
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode(Topic(device, kind), raw, NOW, max_bytes=LIMIT)


def _reason(kind: Kind, payload: bytes | str) -> RejectReason:
    with pytest.raises(Rejected) as info:
        _decode(kind, payload)
    return info.value.reason


def test_topic_parsing() -> None:
    assert parse_topic("scgw/btn-0101/event", "scgw") == Topic("btn-0101", Kind.EVENT)
    assert parse_topic("site/x_1/telemetry", "site").kind is Kind.TELEMETRY


@pytest.mark.parametrize(
    ("topic", "reason"),
    [
        ("scgw/btn/event/extra", RejectReason.BAD_TOPIC),
        ("other/btn/event", RejectReason.BAD_TOPIC),
        ("scgw/btn/alarm", RejectReason.BAD_TOPIC),
        ("scgw/bad id/event", RejectReason.BAD_DEVICE_ID),
        ("scgw/" + "a" * 65 + "/event", RejectReason.BAD_DEVICE_ID),
        ("scgw//event", RejectReason.BAD_DEVICE_ID),
        ("scgw/设备/event", RejectReason.BAD_DEVICE_ID),
        ("scgw/btn\n/event", RejectReason.BAD_DEVICE_ID),
    ],
)
def test_bad_topics_are_rejected(topic: str, reason: RejectReason) -> None:
    with pytest.raises(Rejected) as info:
        parse_topic(topic, "scgw")
    assert info.value.reason is reason


def test_full_event() -> None:
    payload = {
        "id": "e1",
        "seq": 7,
        "ts": "2026-11-27T15:59:00+08:00",
        "type": "sos",
        "battery": 80,
        "extra": {"x": 1},
    }
    event = _decode(Kind.EVENT, orjson.dumps(payload))
    assert isinstance(event, Event)
    assert event.type is EventType.SOS
    assert event.ts == datetime(2026, 11, 27, 7, 59, tzinfo=UTC)
    assert (event.event_id, event.seq, event.battery) == ("e1", 7, 80)
    assert event.dedup_key == "id:e1"
    assert orjson.loads(event.payload)["extra"] == {"x": 1}  # raw payload kept


def test_event_without_ts_takes_receive_time_and_seq_dedup() -> None:
    event = _decode(Kind.EVENT, '{"type": "fall", "seq": 3}')
    assert isinstance(event, Event)
    assert event.ts == NOW
    assert event.dedup_key == "seq:3:2026-11-27"


def test_epoch_seconds_and_naive_iso_are_utc() -> None:
    epoch = int((NOW - timedelta(minutes=1)).timestamp())
    event = _decode(Kind.EVENT, f'{{"type": "sos", "ts": {epoch}}}')
    assert isinstance(event, Event)
    assert event.ts == NOW - timedelta(minutes=1)
    naive = _decode(Kind.EVENT, '{"type": "sos", "ts": "2026-11-27T07:30:00"}')
    assert isinstance(naive, Event)
    assert naive.ts == datetime(2026, 11, 27, 7, 30, tzinfo=UTC)


def test_device_clock_far_off_is_overruled_but_kept() -> None:
    event = _decode(Kind.EVENT, '{"type": "sos", "ts": "2001-01-01T00:00:00Z"}')
    assert isinstance(event, Event)
    assert event.ts == NOW
    assert orjson.loads(event.payload)["_device_ts"] == "2001-01-01T00:00:00Z"


def test_telemetry() -> None:
    tel = _decode(
        Kind.TELEMETRY, '{"ts": 1796803200, "metrics": {"temperature": 21.5, "humidity": 40}}'
    )
    assert isinstance(tel, Telemetry)
    assert {(r.metric, r.value) for r in tel.readings} == {
        ("temperature", 21.5),
        ("humidity", 40.0),
    }
    assert all(r.ts == tel.ts for r in tel.readings)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("{not json", RejectReason.MALFORMED_JSON),
        ("", RejectReason.MALFORMED_JSON),
        (b"\xff\xfe\x00", RejectReason.MALFORMED_JSON),
        ("[1, 2]", RejectReason.INVALID_PAYLOAD),
        ('"sos"', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": {}}', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": {"temperature": "hot"}}', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": {"temperature": true}}', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": {"temperature": null}}', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": {"bad name": 1}}', RejectReason.INVALID_PAYLOAD),
        ('{"metrics": [1, 2]}', RejectReason.INVALID_PAYLOAD),
        ('{"ts": "yesterday", "metrics": {"t": 1}}', RejectReason.INVALID_PAYLOAD),
        ('{"seq": -1, "metrics": {"t": 1}}', RejectReason.INVALID_PAYLOAD),
    ],
)
def test_bad_telemetry(payload: str | bytes, reason: RejectReason) -> None:
    assert _reason(Kind.TELEMETRY, payload) is reason


@pytest.mark.parametrize(
    "payload", ['{"type": "explode"}', '{"type": 1}', "{}", '{"type": "other"}', '{"id": "x"}']
)
def test_events_whose_type_cannot_be_read_are_rejected(payload: str) -> None:
    assert _reason(Kind.EVENT, payload) is RejectReason.INVALID_PAYLOAD


@pytest.mark.parametrize(
    ("payload", "dropped"),
    [
        ('{"type": "sos", "battery": 101}', ("battery",)),
        ('{"type": "sos", "battery": "80"}', ("battery",)),
        ('{"type": "sos", "seq": "7"}', ("seq",)),
        ('{"type": "sos", "seq": 1.5}', ("seq",)),
        ('{"type": "sos", "id": 5}', ("id",)),
        ('{"type": "sos", "id": ""}', ("id",)),
        ('{"type": "sos", "ts": true}', ("ts",)),
        ('{"type": "sos", "ts": "yesterday", "battery": 500}', ("battery", "ts")),
    ],
)
def test_events_keep_their_type_and_drop_bad_optional_fields(
    payload: str, dropped: tuple[str, ...]
) -> None:
    """Life-safety input policy (SPEC, Intake): a press is never the price of a bad field."""
    done = mqtt_json.decode_full(
        Topic("btn-1", Kind.EVENT), payload.encode(), _NOW, max_bytes=LIMIT
    )
    assert isinstance(done.message, Event)
    assert done.message.type is EventType.SOS
    assert done.dropped == dropped
    assert orjson.loads(done.message.payload)["invalid"] == list(dropped)
    for field in dropped:
        value = getattr(done.message, {"id": "event_id"}.get(field, field))
        assert value is None or (field == "ts" and value == _NOW)


def test_integers_beyond_64_bits_are_dropped_from_events_and_refused_in_readings() -> None:
    huge = "99999999999999999999999"
    with contextlib.suppress(Rejected):  # orjson may refuse the number itself: also fine
        done = mqtt_json.decode_full(
            Topic("btn-1", Kind.EVENT),
            f'{{"type": "sos", "seq": {huge}}}'.encode(),
            _NOW,
            max_bytes=LIMIT,
        )
        assert done.dropped == ("seq",)
    assert _reason(Kind.TELEMETRY, f'{{"seq": {huge}, "metrics": {{"t": 1}}}}') in (
        RejectReason.MALFORMED_JSON,
        RejectReason.INVALID_PAYLOAD,
    )


def test_a_fast_clock_is_overruled_and_flagged() -> None:
    ahead = (_NOW + timedelta(minutes=30)).isoformat()
    done = mqtt_json.decode_full(
        Topic("btn-1", Kind.EVENT),
        f'{{"type": "sos", "ts": "{ahead}"}}'.encode(),
        _NOW,
        max_bytes=LIMIT,
    )
    assert done.message.ts == _NOW
    assert done.flags == (mqtt_json.FLAG_CLOCK_AHEAD,)
    assert orjson.loads(done.message.payload)["_device_ts"] == ahead
    near = (_NOW + timedelta(minutes=4)).isoformat()  # within max_clock_ahead: kept
    done = mqtt_json.decode_full(
        Topic("btn-1", Kind.TELEMETRY),
        f'{{"ts": "{near}", "metrics": {{"t": 1}}}}'.encode(),
        _NOW,
        max_bytes=LIMIT,
    )
    assert done.message.ts == _NOW + timedelta(minutes=4)
    assert done.flags == ()


def test_nul_is_taken_out_of_ids_and_firmware_and_flagged() -> None:
    done = mqtt_json.decode_full(
        Topic("btn-1", Kind.EVENT), b'{"type": "sos", "id": "a\\u0000b"}', _NOW, max_bytes=LIMIT
    )
    assert isinstance(done.message, Event)
    assert done.message.event_id == "ab"
    assert done.flags == (mqtt_json.FLAG_NUL,)
    status = mqtt_json.decode_full(
        Topic("btn-1", Kind.STATUS),
        b'{"state": "online", "fw": "1.0\\u0000"}',
        _NOW,
        max_bytes=LIMIT,
    )
    assert isinstance(status.message, Status)
    assert status.message.fw == "1.0"


def test_oversize_is_rejected_before_parsing() -> None:
    big = b'{"type": "sos", "pad": "' + b"x" * LIMIT + b'"}'
    assert _reason(Kind.EVENT, big) is RejectReason.OVERSIZE


def test_status_json_and_bare_will() -> None:
    status = _decode(Kind.STATUS, '{"state": "online", "fw": "1.2", "battery": 90}')
    assert isinstance(status, Status)
    assert (status.state, status.fw, status.battery) == (DeviceState.ONLINE, "1.2", 90)
    will = _decode(Kind.STATUS, b"offline")
    assert isinstance(will, Status)
    assert will.state is DeviceState.OFFLINE
    assert _reason(Kind.STATUS, '{"state": "sleeping"}') is RejectReason.INVALID_PAYLOAD


def test_non_utc_offsets_keep_the_instant() -> None:
    tz = timezone(timedelta(hours=8))
    local = datetime(2026, 11, 27, 15, 0, tzinfo=tz)
    event = _decode(Kind.EVENT, orjson.dumps({"type": "gas", "ts": local.isoformat(), "seq": 1}))
    assert isinstance(event, Event)
    assert event.ts == local
    assert event.ts.utcoffset() == timedelta(0)
    # 00:30 in Beijing is the previous UTC day: the dedup key says so.
    early = datetime(2026, 11, 27, 0, 30, tzinfo=tz)
    event = _decode(Kind.EVENT, orjson.dumps({"type": "gas", "ts": early.isoformat(), "seq": 1}))
    assert isinstance(event, Event)
    assert event.dedup_key == "seq:1:2026-11-26"


@given(kind=st.sampled_from(list(Kind)), payload=st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_rejected(kind: Kind, payload: bytes) -> None:
    with contextlib.suppress(Rejected):
        _decode(kind, payload)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@given(
    kind=st.sampled_from(list(Kind)),
    body=st.dictionaries(
        st.sampled_from(["id", "seq", "ts", "type", "battery", "metrics", "state", "fw", "x"]),
        json_values,
        max_size=6,
    ),
)
def test_arbitrary_json_objects_decode_or_are_rejected(kind: Kind, body: dict[str, object]) -> None:
    try:
        result = _decode(kind, orjson.dumps(body))
    except Rejected:
        return
    assert isinstance(result, Event | Telemetry | Status)


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("key", ["device_id", "device"])
@pytest.mark.parametrize("claimed", ["btn-2", "", None, 7, ["btn-1"], "BTN-1"])
def test_payload_naming_another_device_is_refused(kind: Kind, key: str, claimed: object) -> None:
    body: dict[str, object] = {
        "type": "sos",
        "metrics": {"battery": 50.0},
        "state": "online",
        key: claimed,
    }
    with pytest.raises(Rejected) as info:
        _decode(kind, orjson.dumps(body), device="btn-1")
    assert info.value.reason is RejectReason.ID_MISMATCH
    assert "btn-1" in info.value.detail
    assert key in info.value.detail


@pytest.mark.parametrize("kind", list(Kind))
@pytest.mark.parametrize("key", ["device_id", "device"])
def test_payload_naming_its_own_topic_id_decodes(kind: Kind, key: str) -> None:
    body = {"type": "sos", "metrics": {"battery": 50.0}, "state": "online", key: "btn-1"}
    result = _decode(kind, orjson.dumps(body), device="btn-1")
    assert isinstance(result, Event | Telemetry | Status)
    assert result.device_id == "btn-1"


@given(
    kind=st.sampled_from(list(Kind)),
    claimed=json_values,
    key=st.sampled_from(["device_id", "device"]),
)
def test_any_other_claimed_id_is_a_mismatch(kind: Kind, claimed: object, key: str) -> None:
    body = {"type": "sos", "metrics": {"t": 1.0}, "state": "online", key: claimed}
    if claimed == "btn-1":
        assert isinstance(_decode(kind, orjson.dumps(body)), Event | Telemetry | Status)
        return
    with pytest.raises(Rejected) as info:
        _decode(kind, orjson.dumps(body), device="btn-1")
    assert info.value.reason is RejectReason.ID_MISMATCH


# -- the hand-checked telemetry fast path agrees with the model ------------------------------
_NOW = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
_AHEAD = mqtt_json.MAX_CLOCK_AHEAD
_names = st.one_of(
    st.text("abcXYZ_09", min_size=1, max_size=33),
    st.text(min_size=0, max_size=5),  # unicode, empty, odd characters
)
_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 5),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)
_stamps = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(2025, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.none()
    ).map(lambda d: d.isoformat()),
    st.datetimes(
        min_value=datetime(2025, 1, 1),
        max_value=datetime(2027, 12, 31),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=8)), timezone(-timedelta(hours=5))]
        ),
    ).map(lambda d: d.isoformat().replace("+00:00", "Z")),
    st.text(max_size=30),
    st.integers(0, 2_000_000_000),
    st.floats(),
)


@given(
    st.dictionaries(_names, _values, min_size=0, max_size=4),
    _stamps,
    st.one_of(st.none(), st.integers(-3, 2**64), st.booleans(), st.floats()),
)
def test_fast_telemetry_path_agrees_with_the_model(
    metrics: dict[str, object], ts: object, seq: object
) -> None:
    data: dict[str, object] = {"metrics": metrics}
    if ts is not None:
        data["ts"] = ts
    if seq is not None:
        data["seq"] = seq
    fast = mqtt_json._fast_telemetry("dev-1", data, _NOW, _AHEAD)
    if fast is None:
        return  # the model decides (and explains) these
    assert fast == mqtt_json._model_telemetry("dev-1", data, _NOW, _AHEAD)


@given(
    st.dictionaries(
        st.text("abcdefXYZ_0123456789", min_size=1, max_size=32),
        st.floats(allow_nan=False, allow_infinity=False),
        min_size=1,
        max_size=8,
    ),
    _stamps,
    st.one_of(st.none(), st.integers(0, 2**63 - 1)),
)
def test_fast_path_takes_the_common_shape_and_agrees(
    metrics: dict[str, float], ts: object, seq: int | None
) -> None:
    data: dict[str, object] = {"metrics": metrics, "seq": seq}
    if ts is not None:
        data["ts"] = ts
    fast = mqtt_json._fast_telemetry("dev-1", data, _NOW, _AHEAD)
    if isinstance(ts, str) and len(ts) >= 19 and ts[10] == "T":
        # An ISO string the model rejects is not taken by the fast path either.
        try:
            expected = mqtt_json._model_telemetry("dev-1", data, _NOW, _AHEAD)
        except ValidationError:
            assert fast is None
            return
        assert fast == expected
    elif ts is None:
        assert fast == mqtt_json._model_telemetry("dev-1", data, _NOW, _AHEAD)
