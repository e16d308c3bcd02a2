"""``scgw import``: CSV parsing (pure) and the store-backed import against a real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.csv_import import (
    CsvImportError,
    ImportKind,
    ImportReport,
    ParsedFile,
    RowError,
    UnknownRef,
    format_report,
    import_csv,
    import_data,
    parse_csv,
)
from devices.models import DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage.base import Store

COMMUNITY = Path(__file__).resolve().parents[2] / "config" / "community"

DEVICE_HEADER = "device_id,type,name,resident_id,building,unit,room,serial_port,serial_addr"
RESIDENT_HEADER = (
    "resident_id,name,phone,building,unit,room,grid,lives_alone,medical_notes,contacts,responders"
)
RESPONDER_HEADER = "responder_id,name,role,phone,building,grid,channels,skills,on_duty"


def csv_bytes(*lines: str) -> bytes:
    return ("\n".join(lines) + "\n").encode()


def only_error(parsed: ParsedFile) -> RowError:
    assert len(parsed.errors) == 1, parsed.errors
    return parsed.errors[0]


def devices_of(parsed: ParsedFile) -> list[DeviceRecord]:
    out = [r for r in parsed.records if isinstance(r, DeviceRecord)]
    assert len(out) == len(parsed.records)
    return out


def residents_of(parsed: ParsedFile) -> list[ResidentRecord]:
    out = [r for r in parsed.records if isinstance(r, ResidentRecord)]
    assert len(out) == len(parsed.records)
    return out


def responders_of(parsed: ParsedFile) -> list[ResponderRecord]:
    out = [r for r in parsed.records if isinstance(r, ResponderRecord)]
    assert len(out) == len(parsed.records)
    return out


# -- kinds and headers ------------------------------------------------------------------------


def test_devices_file() -> None:
    parsed = parse_csv(
        csv_bytes(
            DEVICE_HEADER,
            "btn-0101,sos_button,1号楼101 一键呼叫器,r-0101,1,1,101,,",
            "smoke-0101,smoke_detector,,r-0101,1,1,101,,",
        )
    )
    assert parsed.kind is ImportKind.DEVICES
    assert parsed.errors == ()
    assert parsed.rows == 2
    assert parsed.record_lines == (2, 3)
    btn, smoke = devices_of(parsed)
    assert btn == DeviceRecord(
        device_id="btn-0101",
        type=DeviceType.SOS_BUTTON,
        name="1号楼101 一键呼叫器",
        resident_id="r-0101",
        building="1",
        unit="1",
        room="101",
    )
    assert smoke.name is None
    assert smoke.type is DeviceType.SMOKE_DETECTOR


def test_residents_file() -> None:
    parsed = parse_csv(
        csv_bytes(
            RESIDENT_HEADER,
            "r-0101,王秀英,13800001234,1,1,101,g1,是,高血压、糖尿病,"
            "李伟(儿子):13800005678;李芳(女儿):13800005679,vol-01;sw-01",
        )
    )
    assert parsed.kind is ImportKind.RESIDENTS
    (resident,) = residents_of(parsed)
    assert resident == ResidentRecord(
        resident_id="r-0101",
        name="王秀英",
        phone="13800001234",
        building="1",
        unit="1",
        room="101",
        grid="g1",
        lives_alone=True,
        medical_notes="高血压、糖尿病",
        contacts=(
            Contact("李伟(儿子)", "13800005678"),
            Contact("李芳(女儿)", "13800005679"),
        ),
        responders=("vol-01", "sw-01"),
    )


def test_responders_file() -> None:
    parsed = parse_csv(
        csv_bytes(
            RESPONDER_HEADER,
            "vol-01,张志刚,volunteer,13900001234,1,g1,mqtt;json://127.0.0.1:9/,急救;电工,yes",
            "duty-desk,值班台,Duty,,,,mqtt,,",
        )
    )
    assert parsed.kind is ImportKind.RESPONDERS
    vol, duty = responders_of(parsed)
    assert vol == ResponderRecord(
        responder_id="vol-01",
        name="张志刚",
        role="volunteer",
        phone="13900001234",
        building="1",
        grid="g1",
        channels=("mqtt", "json://127.0.0.1:9/"),
        skills=("急救", "电工"),
        on_duty="yes",
    )
    assert duty.role == "duty"
    assert duty.channels == ("mqtt",)
    assert duty.skills == ()


def test_minimal_columns_are_enough() -> None:
    assert parse_csv(csv_bytes("device_id,type", "a,pendant")).kind is ImportKind.DEVICES
    assert parse_csv(csv_bytes("resident_id,name", "r1,王")).kind is ImportKind.RESIDENTS
    assert parse_csv(csv_bytes("responder_id,name,role", "v1,李,other")).kind is (
        ImportKind.RESPONDERS
    )


def test_header_matching_is_case_and_whitespace_tolerant() -> None:
    parsed = parse_csv(csv_bytes("  Device_ID , TYPE ,Resident ID", "btn-1,SOS_Button,r-1"))
    assert parsed.kind is ImportKind.DEVICES
    (device,) = devices_of(parsed)
    assert device.type is DeviceType.SOS_BUTTON
    assert device.resident_id == "r-1"


def test_devices_file_with_resident_columns_is_devices() -> None:
    parsed = parse_csv(csv_bytes("device_id,type,name,resident_id", "b1,sos_button,按钮,r1"))
    assert parsed.kind is ImportKind.DEVICES


def test_unknown_header_names_the_expected_columns() -> None:
    with pytest.raises(CsvImportError) as err:
        parse_csv(csv_bytes("编号,类型,姓名", "1,2,3"))
    text = str(err.value)
    assert "编号, 类型, 姓名" in text
    assert "devices: device_id, type" in text
    assert "residents: resident_id, name" in text
    assert "responders: responder_id, name, role" in text
    assert err.value.message_zh.startswith("无法识别的表头")


def test_header_fitting_two_kinds_is_refused() -> None:
    with pytest.raises(CsvImportError, match="fits both"):
        parse_csv(csv_bytes("resident_id,responder_id,name,role", "r1,v1,王,volunteer"))


def test_duplicate_header_column_is_refused() -> None:
    with pytest.raises(CsvImportError, match="'type' appears twice"):
        parse_csv(csv_bytes("device_id,type,Type", "b1,sos_button,pendant"))


@pytest.mark.parametrize("data", [b"", b"\xef\xbb\xbf", b"\n\n  \r\n", b",,,\n , \n"])
def test_empty_file_is_refused(data: bytes) -> None:
    with pytest.raises(CsvImportError, match="empty"):
        parse_csv(data)


def test_header_only_file_has_no_records() -> None:
    parsed = parse_csv(csv_bytes("device_id,type"))
    assert parsed == ParsedFile(ImportKind.DEVICES, (), (), (), 0)


def test_extra_columns_become_attributes() -> None:
    parsed = parse_csv(
        csv_bytes(
            "device_id,type, 备注 ,安装日期,,Vendor",
            "b1,sos_button,床头,2024-05-01,,Acme",
            "b2,sos_button,,2024-05-02,x,",
        )
    )
    b1, b2 = devices_of(parsed)
    assert b1.attributes == (("备注", "床头"), ("安装日期", "2024-05-01"), ("Vendor", "Acme"))
    assert b2.attributes == (("安装日期", "2024-05-02"), ("column_5", "x"))


# -- encodings and line handling ----------------------------------------------------------------

CHINESE_RESIDENTS = (
    "resident_id,name,medical_notes,contacts\r\n"
    "r-1,王秀英,高血压、心脏起搏器,张伟：13800001111\r\n"
    "r-2,欧阳淑珍,糖尿病,\r\n"
)


def assert_chinese_residents(parsed: ParsedFile) -> None:
    assert parsed.errors == ()
    first, second = residents_of(parsed)
    assert first.name == "王秀英"
    assert first.medical_notes == "高血压、心脏起搏器"
    assert first.contacts == (Contact("张伟", "13800001111"),)
    assert second.name == "欧阳淑珍"


def test_gb18030_file_as_excel_saves_it_in_china() -> None:
    data = CHINESE_RESIDENTS.encode("gb18030")
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert_chinese_residents(parse_csv(data))


def test_utf8_with_bom() -> None:
    parsed = parse_csv(b"\xef\xbb\xbf" + CHINESE_RESIDENTS.encode())
    assert parsed.kind is ImportKind.RESIDENTS
    assert_chinese_residents(parsed)


def test_utf8_without_bom() -> None:
    assert_chinese_residents(parse_csv(CHINESE_RESIDENTS.encode()))


def test_gb18030_with_characters_outside_gbk() -> None:
    # 䶮 (U+4DAE) is only in GB18030's four-byte range, not in GBK.
    parsed = parse_csv("resident_id,name\nr-1,刘䶮\n".encode("gb18030"))
    assert residents_of(parsed)[0].name == "刘䶮"


def test_utf16_is_refused_with_advice() -> None:
    with pytest.raises(CsvImportError, match="UTF-16"):
        parse_csv("device_id,type\r\n".encode("utf-16"))


def test_undecodable_bytes_are_refused() -> None:
    with pytest.raises(CsvImportError, match="neither UTF-8 nor GB18030"):
        parse_csv(b"device_id,type\n\xff\xff,sos_button\n")


def test_utf8_file_with_a_few_foreign_bytes_is_refused_not_misread() -> None:
    # A UTF-8 file with one row appended by an editor that saved it as GBK must not be read as
    # GB18030 (that would silently garble every Chinese name above it).
    data = CHINESE_RESIDENTS.encode() + "r-3,张桂英,,\r\n".encode("gbk")
    with pytest.raises(CsvImportError, match="line 4: the file is UTF-8 but has invalid bytes"):
        parse_csv(data)


def test_blank_lines_crlf_and_multiline_cells_keep_physical_line_numbers() -> None:
    data = (
        b"\r\n"  # line 1: blank, skipped; the header is on line 2
        b"device_id,type,name\r\n"
        b"b1,sos_button,ok\r\n"  # 3
        b"\r\n"  # 4
        b",,\r\n"  # 5: empty cells only, skipped
        b'b2,sos_button,"two\r\nlines"\r\n'  # 6-7
        b"b3,smok,bad\r\n"  # 8
    )
    parsed = parse_csv(data)
    assert parsed.rows == 3
    assert parsed.record_lines == (3, 6)
    assert devices_of(parsed)[1].name == "two\r\nlines"
    err = only_error(parsed)
    assert err.line == 8


def test_cells_are_trimmed() -> None:
    parsed = parse_csv(csv_bytes("device_id,type,name", "  b1 ,\tpendant ,  挂件　"))
    (device,) = devices_of(parsed)
    assert (device.device_id, device.type, device.name) == ("b1", DeviceType.PENDANT, "挂件")


# -- validation: every error with its line --------------------------------------------------------


def test_bad_type_message_in_both_languages() -> None:
    parsed = parse_csv(
        csv_bytes(
            "device_id,type",
            "b1,sos_button",
            "b2,sos_button",
            "b3,sos_button",
            "b4,sos_button",
            "b5,sos_button",
            "s6,smok",
        )
    )
    err = only_error(parsed)
    assert (err.line, err.column) == (7, "type")
    assert str(err).startswith("line 7: type 'smok' is not a device type")
    assert str(err).endswith(" / 第7行：设备类型 'smok' 无效")
    assert len(parsed.records) == 5


@pytest.mark.parametrize(
    ("row", "column", "fragment"),
    [
        ("btn 1,sos_button,,", "device_id", "not a valid id"),
        ("btn/1,sos_button,,", "device_id", "not a valid id"),
        ("b" * 65 + ",sos_button,,", "device_id", "not a valid id"),
        (",sos_button,,", "device_id", "device_id is empty"),
        ("b1,,,", "type", "type is empty"),
        ("b1,smoke,,", "type", "not a device type"),
        ("b1,sos_button,r 1,", "resident_id", "not a valid id"),
    ],
)
def test_device_row_errors(row: str, column: str, fragment: str) -> None:
    parsed = parse_csv(csv_bytes("device_id,type,resident_id,name", "ok,pendant,,", row))
    err = only_error(parsed)
    assert (err.line, err.column) == (3, column)
    assert fragment in err.message_en
    assert err.message_zh
    assert [r.device_id for r in devices_of(parsed)] == ["ok"]


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("0x0001", 1),
        ("0X00ff", 255),
        ("0xFFFFFFFF", 0xFFFFFFFF),
        ("42", 42),
        ("0", 0),
        ("4294967295", 4294967295),
        ("0x0001_0002", 0x00010002),
    ],
)
def test_serial_addr_decimal_or_hex(addr: str, expected: int) -> None:
    parsed = parse_csv(
        csv_bytes("device_id,type,serial_port,serial_addr", f"b1,sos_button,bus1,{addr}")
    )
    (device,) = devices_of(parsed)
    assert (device.serial_port, device.serial_addr) == ("bus1", expected)


@pytest.mark.parametrize("addr", ["0x100000000", "4294967296", "-1", "abc", "0x", "0xZZ", "1.5"])
def test_serial_addr_errors(addr: str) -> None:
    parsed = parse_csv(
        csv_bytes("device_id,type,serial_port,serial_addr", f"b1,sos_button,bus1,{addr}")
    )
    err = only_error(parsed)
    assert (err.line, err.column) == (2, "serial_addr")
    assert addr in err.message_en
    assert "串口地址" in err.message_zh


def test_serial_addr_and_port_go_together() -> None:
    parsed = parse_csv(
        csv_bytes(
            "device_id,type,serial_port,serial_addr", "b1,sos_button,,0x01", "b2,sos_button,bus1,"
        )
    )
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "serial_port"), (3, "serial_addr")]
    assert parsed.records == ()


def test_serial_address_and_zigbee_name_are_unique_in_a_file() -> None:
    parsed = parse_csv(
        csv_bytes(
            "device_id,type,serial_port,serial_addr,zigbee_name",
            "b1,sos_button,bus1,1,",
            "b2,sos_button,bus1,0x0001,",
            "b3,sos_button,bus2,1,",
            "d1,door_contact,,,door_1",
            "d2,door_contact,,,door_1",
        )
    )
    assert [(e.line, e.column) for e in parsed.errors] == [(3, "serial_addr"), (6, "zigbee_name")]
    assert "line 2" in parsed.errors[0].message_en
    assert [r.device_id for r in devices_of(parsed)] == ["b1", "b3", "d1"]


def test_duplicate_id_is_an_error_on_the_later_line() -> None:
    parsed = parse_csv(
        csv_bytes("device_id,type,name", "b1,sos_button,first", "b2,pendant,", "b1,pendant,second")
    )
    err = only_error(parsed)
    assert (err.line, err.column) == (4, "device_id")
    assert "already appears on line 2" in err.message_en
    assert "与第2行重复" in err.message_zh
    assert [(r.device_id, r.name) for r in devices_of(parsed)] == [("b1", "first"), ("b2", None)]


def test_several_errors_in_one_row_are_all_reported_and_count_once() -> None:
    parsed = parse_csv(csv_bytes("device_id,type,serial_port,serial_addr", "b 1,smok,bus1,0xZZ"))
    assert [e.column for e in parsed.errors] == ["device_id", "type", "serial_addr"]
    assert {e.line for e in parsed.errors} == {2}
    assert parsed.rows == 1
    assert parsed.records == ()


def test_too_many_cells() -> None:
    parsed = parse_csv(csv_bytes("device_id,type", "b1,sos_button,", "b2,sos_button,extra"))
    err = only_error(parsed)
    assert (err.line, err.column) == (3, None)
    assert [r.device_id for r in devices_of(parsed)] == ["b1"]


def test_short_rows_are_padded() -> None:
    parsed = parse_csv(csv_bytes("device_id,type,name,room", "b1,pendant"))
    assert devices_of(parsed)[0].room is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", True),
        ("0", False),
        ("true", True),
        ("FALSE", False),
        ("Yes", True),
        ("no", False),
        ("y", True),
        ("N", False),
        ("是", True),
        ("否", False),
        ("", False),
    ],
)
def test_lives_alone_values(value: str, expected: bool) -> None:
    parsed = parse_csv(csv_bytes("resident_id,name,lives_alone", f"r1,王,{value}"))
    assert residents_of(parsed)[0].lives_alone is expected


def test_lives_alone_error() -> None:
    parsed = parse_csv(csv_bytes("resident_id,name,lives_alone", "r1,王,1", "r2,李,maybe"))
    err = only_error(parsed)
    assert (err.line, err.column) == (3, "lives_alone")
    assert "独居" in err.message_zh


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("张伟:13800001111", (Contact("张伟", "13800001111"),)),
        (
            "张伟：13800001111；李娜：139-0000-2222",
            (
                Contact("张伟", "13800001111"),
                Contact("李娜", "139-0000-2222"),
            ),
        ),
        (
            " 张伟 : 13800001111 ; 李娜:+86 139 0000 2222 ;",
            (
                Contact("张伟", "13800001111"),
                Contact("李娜", "+86 139 0000 2222"),
            ),
        ),
        ("王芳(女儿):010-12345678", (Contact("王芳(女儿)", "010-12345678"),)),
    ],
)
def test_contacts_parsing(cell: str, expected: tuple[Contact, ...]) -> None:
    parsed = parse_csv(csv_bytes("resident_id,name,contacts", f'r1,王,"{cell}"'))
    assert residents_of(parsed)[0].contacts == expected


@pytest.mark.parametrize("cell", ["张伟", "张伟:", ":13800001111", "张伟:电话", "张伟:1.38E+10"])
def test_contacts_errors(cell: str) -> None:
    parsed = parse_csv(csv_bytes("resident_id,name,contacts", "r0,李,", f"r1,王,{cell}"))
    err = only_error(parsed)
    assert (err.line, err.column) == (3, "contacts")


def test_phone_turned_into_a_number_by_excel() -> None:
    parsed = parse_csv(csv_bytes("resident_id,name,phone", "r1,王,1.38E+10"))
    err = only_error(parsed)
    assert err.column == "phone"
    assert "format the column as text" in err.message_en
    assert "科学计数法" in err.message_zh


def test_responders_list() -> None:
    parsed = parse_csv(
        csv_bytes("resident_id,name,responders", "r1,王,vol-01; vol-02；vol-01;", "r2,李,vol 3")
    )
    assert residents_of(parsed)[0].responders == ("vol-01", "vol-02")
    err = only_error(parsed)
    assert (err.line, err.column) == (3, "responders")


def test_missing_name_is_an_error() -> None:
    parsed = parse_csv(csv_bytes("resident_id,name", "r1,", "r2,李"))
    err = only_error(parsed)
    assert (err.line, err.column) == (2, "name")
    assert err.message_zh == "名称 为空"


@pytest.mark.parametrize(
    "role", ["volunteer", "social_worker", "grid_worker", "duty", "family", "doctor", "other"]
)
def test_every_role(role: str) -> None:
    parsed = parse_csv(csv_bytes("responder_id,name,role", f"p1,李,{role}"))
    assert responders_of(parsed)[0].role == role


def test_role_error() -> None:
    parsed = parse_csv(csv_bytes("responder_id,name,role", "p1,李,volunter", "p2,张,"))
    assert [(e.line, e.column) for e in parsed.errors] == [(2, "role"), (3, "role")]
    assert "'volunter' is not a responder role" in parsed.errors[0].message_en


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("mqtt", ("mqtt",)),
        ("MQTT;dingtalk://token/", ("mqtt", "dingtalk://token/")),
        (
            "wecombot://key；mailto://user:pass@example.com",
            ("wecombot://key", "mailto://user:pass@example.com"),
        ),
        ("json://127.0.0.1:9/", ("json://127.0.0.1:9/",)),
        ("", ()),
    ],
)
def test_channels(cell: str, expected: tuple[str, ...]) -> None:
    parsed = parse_csv(csv_bytes("responder_id,name,role,channels", f"p1,李,volunteer,{cell}"))
    assert responders_of(parsed)[0].channels == expected


@pytest.mark.parametrize("cell", ["sms", "mqtt;dingtalk", "http:/x", "://x", "json:// x"])
def test_channel_errors(cell: str) -> None:
    parsed = parse_csv(
        csv_bytes("responder_id,name,role,channels", f"p1,李,volunteer,{cell}", "p2,张,duty,mqtt")
    )
    err = only_error(parsed)
    assert (err.line, err.column) == (2, "channels")
    assert [r.responder_id for r in responders_of(parsed)] == ["p2"]


def test_skills() -> None:
    parsed = parse_csv(csv_bytes("responder_id,name,role,skills", "p1,李,doctor,急救; 心肺复苏；;"))
    assert responders_of(parsed)[0].skills == ("急救", "心肺复苏")


# -- no unhandled exceptions -------------------------------------------------------------------


@given(st.binary(max_size=2048))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    error: CsvImportError | None = None
    try:
        parse_csv(data)
    except CsvImportError as err:
        error = err
    if error is not None:
        assert error.message_en
        assert error.message_zh


_cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "sos_button",
            "0x01",
            "0x",
            "99999999999",
            "是",
            "a:1",
            "a：b；c",
            "mqtt",
            "json://x",
            "volunteer",
            '"',
            "\r\n",
            "",
        ]
    ),
)


@given(
    header=st.sampled_from(
        [
            DEVICE_HEADER + ",zigbee_name,extra",
            RESIDENT_HEADER + ",extra",
            RESPONDER_HEADER + ",extra",
        ]
    ),
    rows=st.lists(st.lists(_cell, max_size=14), max_size=8),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "gb18030"]),
)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_arbitrary_rows_under_a_valid_header(
    header: str, rows: list[list[str]], encoding: str
) -> None:
    text = "\n".join([header, *(",".join(row) for row in rows)])
    try:
        data = text.encode(encoding)
    except UnicodeEncodeError:
        return
    try:
        parsed = parse_csv(data)
    except CsvImportError:
        return
    assert len(parsed.records) == len(parsed.record_lines)
    assert len(parsed.records) + parsed.rejected == parsed.rows
    for err in parsed.errors:
        assert err.line >= 2
        assert str(err).startswith(f"line {err.line}: ")


# -- the report ---------------------------------------------------------------------------------


def test_format_report() -> None:
    report = ImportReport(
        kind=ImportKind.DEVICES,
        rows=151,
        inserted=150,
        updated=0,
        unchanged=0,
        errors=(
            RowError(7, "type", "type 'smok' is not a device type", "设备类型 'smok' 无效"),
            RowError(7, "device_id", "device_id is empty", "设备编号 为空"),
        ),
        unknown_refs=(UnknownRef(12, "btn-9", "resident_id", "r-9"),),
    )
    text = format_report(report)
    assert "devices: 151 rows, 150 new, 0 updated, 0 unchanged, 1 rejected" in text
    assert "设备：共 151 行，新增 150，更新 0，未变 0，拒绝 1" in text
    assert "line 7: type 'smok' is not a device type / 第7行：设备类型 'smok' 无效" in text
    assert "line 12: resident_id 'r-9' of 'btn-9' is not in the registry" in text
    assert "第12行" in text


def test_format_report_without_problems_is_two_lines() -> None:
    report = ImportReport(ImportKind.RESPONDERS, 3, 0, 1, 2, (), ())
    assert format_report(report).splitlines() == [
        "responders: 3 rows, 0 new, 1 updated, 2 unchanged, 0 rejected",
        "响应人员：共 3 行，新增 0，更新 1，未变 2，拒绝 0",
    ]


# -- the example community -----------------------------------------------------------------------


def test_example_community_parses_without_errors_or_dangling_references() -> None:
    residents = parse_csv((COMMUNITY / "residents.csv").read_bytes())
    devices = parse_csv((COMMUNITY / "devices.csv").read_bytes())
    responders = parse_csv((COMMUNITY / "responders.csv").read_bytes())
    assert (residents.kind, devices.kind, responders.kind) == (
        ImportKind.RESIDENTS,
        ImportKind.DEVICES,
        ImportKind.RESPONDERS,
    )
    for parsed in (residents, devices, responders):
        assert parsed.errors == ()
        assert len(parsed.records) == parsed.rows

    resident_ids = {r.resident_id for r in residents_of(residents)}
    responder_ids = {r.responder_id for r in responders_of(responders)}
    device_list = devices_of(devices)
    assert {d.resident_id for d in device_list if d.resident_id} <= resident_ids
    for resident in residents_of(residents):
        assert set(resident.responders) <= responder_ids, resident
    # Every household has a one-button caller; every device type appears.
    assert {d.resident_id for d in device_list if d.type is DeviceType.SOS_BUTTON} == resident_ids
    assert {d.type for d in device_list} == set(DeviceType)
    assert 50 <= len(resident_ids) <= 80
    assert 120 <= len(device_list) <= 200
    assert any(d.serial_port and d.serial_addr is not None for d in device_list)
    assert any(d.zigbee_name for d in device_list)
    roles = [r.role for r in responders_of(responders)]
    assert roles.count("volunteer") >= 10
    assert "duty" in roles
    assert all(r.channels == ("mqtt",) for r in responders_of(responders))


def test_example_community_files_are_plain_utf8() -> None:
    for name in ("residents.csv", "devices.csv", "responders.csv"):
        data = (COMMUNITY / name).read_bytes()
        assert not data.startswith(b"\xef\xbb\xbf")
        data.decode("utf-8")


def test_example_community_script_reproduces_the_files(tmp_path: Path) -> None:
    import runpy

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_example_community.py"
    module = runpy.run_path(str(script))
    assert module["main"](["make_example_community.py", str(tmp_path)]) == 0
    for name in ("residents.csv", "devices.csv", "responders.csv"):
        assert (tmp_path / name).read_bytes() == (COMMUNITY / name).read_bytes(), name


# -- against a real SQLite store -----------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    from gateway.storage.factory import open_store

    s = open_store(f"sqlite:///{tmp_path}/t.db")
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


async def test_bad_row_is_reported_and_the_rest_imports(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "devices.csv",
        csv_bytes(
            "device_id,type,name",
            "btn-0101,sos_button,一键呼叫器",
            "smoke-0101,smok,烟感",
            "smoke-0102,smoke_detector,烟感",
        ),
    )
    report = await import_csv(store, path)
    assert (report.kind, report.rows, report.inserted, report.rejected) == (
        ImportKind.DEVICES,
        3,
        2,
        1,
    )
    assert report.errors[0].line == 3
    assert "line 3: type 'smok'" in format_report(report)
    assert await store.existing_ids("devices", ["btn-0101", "smoke-0101", "smoke-0102"]) == {
        "btn-0101",
        "smoke-0102",
    }


async def test_reimport_changes_nothing(store: Store, tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "residents.csv",
        "\ufeffresident_id,name,lives_alone,contacts,备注\r\n"
        "r-1,王秀英,是,张伟:13800001111,独居老人\r\n"
        "r-2,李桂兰,否,,\r\n".encode(),
    )
    first = await import_csv(store, path)
    assert (first.inserted, first.updated, first.unchanged) == (2, 0, 0)
    again = await import_csv(store, path)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 2)
    # The same rows saved by Excel as GB18030 are still the same rows.
    gb = write(tmp_path, "residents-gb.csv", path.read_bytes()[3:].decode().encode("gb18030"))
    third = await import_csv(store, gb)
    assert (third.inserted, third.updated, third.unchanged) == (0, 0, 2)
    changed = write(
        tmp_path,
        "residents2.csv",
        "resident_id,name,lives_alone,contacts,备注\nr-1,王秀英,否,张伟:13800001111,独居老人\n".encode(),
    )
    fourth = await import_csv(store, changed)
    assert (fourth.inserted, fourth.updated, fourth.unchanged) == (0, 1, 0)


async def test_unknown_references_are_reported_not_blocking(store: Store, tmp_path: Path) -> None:
    await import_data(store, csv_bytes("responder_id,name,role", "vol-01,张志刚,volunteer"))
    residents = await import_data(
        store, csv_bytes("resident_id,name,responders", "r-1,王,vol-01;vol-99", "r-2,李,")
    )
    assert residents.inserted == 2
    assert residents.unknown_refs == (UnknownRef(2, "r-1", "responders", "vol-99"),)
    devices = await import_data(
        store, csv_bytes("device_id,type,resident_id", "b1,sos_button,r-1", "b2,pendant,r-404")
    )
    assert devices.inserted == 2
    assert devices.unknown_refs == (UnknownRef(3, "b2", "resident_id", "r-404"),)
    assert "r-404" in format_report(devices)


async def test_example_community_imports_cleanly(store: Store) -> None:
    reports = [
        await import_csv(store, COMMUNITY / name)
        for name in ("responders.csv", "residents.csv", "devices.csv")
    ]
    for report in reports:
        assert report.errors == ()
        assert report.unknown_refs == ()
        assert report.inserted == report.rows
    again = [
        await import_csv(store, COMMUNITY / name)
        for name in ("responders.csv", "residents.csv", "devices.csv")
    ]
    for report in again:
        assert (report.inserted, report.updated) == (0, 0)
        assert report.unchanged == report.rows


async def test_unreadable_file_is_a_clear_error(store: Store, tmp_path: Path) -> None:
    with pytest.raises(CsvImportError, match="cannot read"):
        await import_csv(store, tmp_path / "missing.csv")
