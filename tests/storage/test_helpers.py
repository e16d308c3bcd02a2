"""Backend-neutral helpers: placeholder translation, instants, pending folding, upsert plans."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.models import EventType, PendingSighting
from gateway.storage._registry import plan_upsert
from gateway.storage._util import as_json_text, fold_pending, qmark_to_pyformat, utc_text


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT ? , ?", "SELECT %s , %s"),
        ("SELECT '?' , ?", "SELECT '?' , %s"),
        ("SELECT 'it''s ?', ?", "SELECT 'it''s ?', %s"),
        ('SELECT "odd?col" FROM t WHERE a = ?', 'SELECT "odd?col" FROM t WHERE a = %s'),
        (
            "SELECT 1 -- why? 100%\nWHERE x LIKE '5%' AND y = ?",
            "SELECT 1 -- why? 100%%\nWHERE x LIKE '5%%' AND y = %s",
        ),
        ("SELECT 10 % 3", "SELECT 10 %% 3"),
    ],
)
def test_qmark_to_pyformat(sql: str, expected: str) -> None:
    assert qmark_to_pyformat(sql) == expected


@given(
    st.datetimes(
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-9, minutes=-30))]
        ),
        min_value=datetime(1, 1, 2),
        max_value=datetime(9999, 12, 30),
    )
)
def test_utc_text_orders_like_instants(ts: datetime) -> None:
    text = utc_text(ts)
    assert len(text) == 32
    assert text.endswith("+00:00")
    assert datetime.fromisoformat(text) == ts
    later = ts + timedelta(microseconds=1)
    assert utc_text(later) > text


def test_utc_text_refuses_naive() -> None:
    with pytest.raises(ValueError, match="naive"):
        utc_text(datetime(2026, 1, 1))


def test_as_json_text() -> None:
    assert as_json_text('{"a": 1}') == '{"a": 1}'
    assert as_json_text("not json") == '"not json"'
    assert as_json_text("nul\x00") == '"nul\\u0000"'


def test_fold_pending_matches_one_by_one() -> None:
    t = datetime(2026, 3, 14, tzinfo=UTC)
    folded = fold_pending(
        [
            PendingSighting("b", t, "status", "{}"),
            PendingSighting("a", t + timedelta(seconds=2), "event", "p2", EventType.SOS),
            PendingSighting("a", t, "telemetry", "p0"),
            PendingSighting("a", t + timedelta(seconds=2), "event", "p2b", EventType.CANCEL),
            PendingSighting("a", t + timedelta(seconds=1), "event", "p1", EventType.SOS),
        ]
    )
    assert [f.device_id for f in folded] == ["a", "b"]
    a = folded[0]
    assert (a.messages, a.sos_count, a.first_seen, a.last_seen) == (
        4,
        2,
        t,
        t + timedelta(seconds=2),
    )
    assert (a.last_kind, a.last_payload) == ("event", "p2b")  # equal time: the later one


def test_plan_upsert() -> None:
    current = {"x": (1,), "y": (2,)}
    plan = plan_upsert([("x", (1,)), ("y", (3,)), ("z", (4,)), ("z", (5,)), ("z", (5,))], current)
    assert plan.inserts == [("z", (4,))]
    assert plan.updates == [("y", (3,)), ("z", (5,))]
    assert plan.unchanged == 2
