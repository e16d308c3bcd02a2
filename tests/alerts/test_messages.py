"""Notification text: both languages, local time, the resident's details, an SMS-sized line."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alerts.messages import (
    KIND_NAMES,
    SHORT_TEXT_MAX,
    format_address,
    kind_name,
    local_time,
    render,
)
from alerts.models import Alert, AlertState, Priority
from devices.models import DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord

T0 = datetime(2026, 3, 14, 9, 26, 53, tzinfo=UTC)  # 17:26:53 in Shanghai
ACCEPT = "https://scgw.example.cn/r/AbCdEfGhIjKlMnOpQrStUvWxYz012345"
DECLINE = ACCEPT + "?action=decline"

RESIDENT = ResidentRecord(
    resident_id="r1",
    name="张秀英",
    phone="13800138000",
    building="3",
    unit="1",
    room="201",
    lives_alone=True,
    medical_notes="高血压，糖尿病",
    contacts=(Contact("李明", "13900139000"), Contact("李华", "13700137000")),
)
DEVICE = DeviceRecord(device_id="btn-1", type=DeviceType.SOS_BUTTON, name="客厅呼叫器")


def alert(kind: str = "sos", priority: Priority = Priority.P1, **kw: object) -> Alert:
    base = Alert(
        id="a-1",
        kind=kind,
        priority=priority,
        state=AlertState.OPEN,
        opened_at=T0,
        updated_at=T0,
        device_id="btn-1",
        resident_id="r1",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_zh_by_default_with_everything_a_helper_needs() -> None:
    m = render(alert(), RESIDENT, DEVICE, accept_url=ACCEPT, decline_url=DECLINE)
    assert m.lang == "zh"
    assert m.title == "【紧急】紧急呼叫 · 张秀英 3号楼1单元201"
    for expected in (
        "张秀英（独居）",
        "地址：3号楼1单元201",
        "电话：13800138000",
        "健康备注：高血压，糖尿病",
        "紧急联系人：李明 13900139000；李华 13700137000",
        "客厅呼叫器 (btn-1)",
        "时间：2026-03-14 17:26:53",  # Asia/Shanghai, not UTC
        f"一键接单：{ACCEPT}",
        f"无法前往：{DECLINE}",
    ):
        assert expected in m.body, expected


def test_english() -> None:
    m = render(alert("fall"), RESIDENT, DEVICE, lang="en", accept_url=ACCEPT, decline_url=None)
    assert m.title.startswith("[EMERGENCY] Fall detected · 张秀英 Bldg 3, Unit 1, Room 201")
    assert "Phone: 13800138000" in m.body
    assert "Time: 2026-03-14 17:26:53" in m.body
    assert f"Accept: {ACCEPT}" in m.body
    assert "Decline" not in m.body  # no decline link given


@pytest.mark.parametrize(
    ("kind", "zh", "en"),
    [
        ("sos", "紧急呼叫", "Emergency call"),
        ("smoke", "烟雾报警", "Smoke alarm"),
        ("gas", "燃气泄漏", "Gas leak"),
        ("co", "一氧化碳", "Carbon monoxide"),
        ("water_leak", "漏水", "Water leak"),
        ("high_temp", "高温", "High temperature"),
        ("welfare_check", "关怀探访：长时间无活动", "Welfare check: no activity"),
        ("device_offline", "设备离线", "Device offline"),
        ("low_battery", "低电量", "Low battery"),
        ("tamper", "防拆报警", "Tamper"),
    ],
)
def test_kind_names(kind: str, zh: str, en: str) -> None:
    assert kind_name(kind, "zh") == zh
    assert kind_name(kind, "en") == en


def test_unknown_kind_is_shown_raw() -> None:
    m = render(alert("mystery_kind"), RESIDENT, DEVICE, accept_url=None, decline_url=None)
    assert "mystery_kind" in m.title
    assert "mystery_kind" in m.short


def test_priority_words() -> None:
    p2 = render(alert("water_leak", Priority.P2), None, None, accept_url=None, decline_url=None)
    p3 = render(alert("low_battery", Priority.P3), None, None, accept_url=None, decline_url=None)
    assert p2.title.startswith("【重要】漏水")
    assert p3.title.startswith("【维护】低电量")


def test_no_resident_uses_the_device_place() -> None:
    corridor = DeviceRecord(
        device_id="smk-9", type=DeviceType.SMOKE_DETECTOR, building="5", unit="2", room="楼道"
    )
    m = render(
        alert("smoke", device_id="smk-9", resident_id=None),
        None,
        corridor,
        accept_url=ACCEPT,
        decline_url=None,
    )
    assert "5号楼2单元楼道" in m.body
    assert "未登记居民" in m.body
    assert "smk-9" in m.body


def test_staff_words_for_buildings_kept() -> None:
    assert format_address("A座", "2", "1101") == "A座2单元1101"
    assert format_address("东区7栋", None, "302") == "东区7栋302"
    assert format_address(None, None, None) == ""
    assert format_address("3", "1", "201", "en") == "Bldg 3, Unit 1, Room 201"


def test_repeats_and_readings_are_mentioned() -> None:
    m = render(
        alert("gas", count=3, detail='{"metric": "gas_ppm", "value": 62.5}'),
        RESIDENT,
        DEVICE,
        accept_url=None,
        decline_url=None,
    )
    assert "已呼叫3次" in m.body
    assert "gas_ppm 62.5" in m.body
    # A detail that is not JSON is not an error.
    render(alert(detail="not json"), RESIDENT, DEVICE, accept_url=None, decline_url=None)


def test_naive_times_are_utc() -> None:
    assert local_time(datetime(2026, 1, 1, 16, 30)).strftime("%m-%d %H:%M") == "01-02 00:30"


def test_short_keeps_the_whole_link_and_stays_short() -> None:
    long_name = replace(RESIDENT, name="欧阳" * 30, building="东湖社区幸福里小区十七号楼")
    m = render(alert(), long_name, DEVICE, accept_url=ACCEPT, decline_url=DECLINE)
    assert m.short.endswith(ACCEPT)
    text = m.short[: -len(ACCEPT)]
    assert len(text) <= SHORT_TEXT_MAX + len(" 接单：")
    assert m.short.startswith("【紧急】紧急呼叫")


def test_short_prefers_name_address_phone() -> None:
    m = render(alert(), RESIDENT, DEVICE, accept_url=ACCEPT, decline_url=None)
    assert m.short == f"【紧急】紧急呼叫 张秀英 3号楼1单元201 13800138000 17:26 接单：{ACCEPT}"


@given(
    kind=st.sampled_from([*KIND_NAMES, "x"]),
    name=st.text(min_size=1, max_size=80),
    building=st.none() | st.text(max_size=40),
    lang=st.sampled_from(["zh", "en"]),
)
def test_short_is_bounded_for_any_input(
    kind: str, name: str, building: str | None, lang: str
) -> None:
    resident = replace(RESIDENT, name=name, building=building)
    m = render(
        alert(kind),
        resident,
        DEVICE,
        lang="en" if lang == "en" else "zh",
        accept_url=ACCEPT,
        decline_url=None,
    )
    assert m.short.endswith(ACCEPT)
    # The headline itself can be longer than the cap only for a huge unknown kind.
    assert len(m.short) - len(ACCEPT) <= SHORT_TEXT_MAX + len(" Tap: ")
