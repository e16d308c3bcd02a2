"""``scgw import FILE.csv``: residents, devices and responders from the spreadsheets staff keep.

The file's kind is known by its header. The bytes are UTF-8 (with or without BOM) or, when they
are not valid UTF-8, GB18030 — what Excel saves as "CSV" on a Chinese Windows. Every bad row is
reported with its physical line number (the header is line 1), the column and a reason in English
and Chinese; the other rows still import. Re-importing the same file changes nothing: the store's
upsert reports every row as unchanged.

``parse_csv`` is pure (bytes in, typed records and row errors out); ``import_csv`` reads a file,
upserts the records and reports references to ids that are still unknown after the import.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from typing import Final, TypeVar

from devices.models import DEVICE_ID_RE, DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from devices.registry import RegistryWriter, UpsertResult

__all__ = [
    "RESPONDER_ROLES",
    "CsvImportError",
    "ImportKind",
    "ImportReport",
    "ParsedFile",
    "Record",
    "RowError",
    "UnknownRef",
    "format_report",
    "import_csv",
    "import_data",
    "parse_bool",
    "parse_csv",
]

Record = DeviceRecord | ResidentRecord | ResponderRecord
_T = TypeVar("_T")

# The responder roles the alert engine knows (`role:R` policy targets, `role:duty` = the station
# desk). Keep this set identical to the alert engine's roles.
RESPONDER_ROLES: Final = frozenset(
    {"volunteer", "social_worker", "grid_worker", "duty", "family", "doctor", "other"}
)

_TRUE: Final = frozenset({"1", "true", "yes", "y", "是"})
_FALSE: Final = frozenset({"0", "false", "no", "n", "否"})
_U32_MAX: Final = 0xFFFF_FFFF
_CHANNEL_URL_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://\S+$")
_PHONE_RE: Final = re.compile(r"^\+?[0-9][0-9 ()\-]*$")
_EXCEL_NUMBER_RE: Final = re.compile(r"^[0-9.]+[eE]\+?[0-9]+$")
_LIST_SEP_RE: Final = re.compile(r"[;；]")
_CONTACT_SEP_RE: Final = re.compile(r"[:：]")


class ImportKind(StrEnum):
    DEVICES = "devices"
    RESIDENTS = "residents"
    RESPONDERS = "responders"


_KIND_ZH: Final = {
    ImportKind.DEVICES: "设备",
    ImportKind.RESIDENTS: "住户",
    ImportKind.RESPONDERS: "响应人员",
}


def _record_columns(cls: type[Record]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "attributes")


# The known columns are the record fields, in the order the SPEC lists them.
_COLUMNS: Final[dict[ImportKind, tuple[str, ...]]] = {
    ImportKind.DEVICES: _record_columns(DeviceRecord),
    ImportKind.RESIDENTS: _record_columns(ResidentRecord),
    ImportKind.RESPONDERS: _record_columns(ResponderRecord),
}
_REQUIRED: Final[dict[ImportKind, tuple[str, ...]]] = {
    ImportKind.DEVICES: ("device_id", "type"),
    ImportKind.RESIDENTS: ("resident_id", "name"),
    ImportKind.RESPONDERS: ("responder_id", "name", "role"),
}
_ID_COLUMN: Final = {
    ImportKind.DEVICES: "device_id",
    ImportKind.RESIDENTS: "resident_id",
    ImportKind.RESPONDERS: "responder_id",
}

_COLUMN_ZH: Final = {
    "device_id": "设备编号",
    "type": "设备类型",
    "name": "名称",
    "resident_id": "住户编号",
    "building": "楼栋",
    "unit": "单元",
    "room": "房间",
    "serial_port": "串口",
    "serial_addr": "串口地址",
    "zigbee_name": "Zigbee 名称",
    "sia_account": "SIA 账号",
    "sia_zone": "SIA 防区",
    "phone": "电话",
    "grid": "网格",
    "lives_alone": "独居",
    "medical_notes": "病史备注",
    "contacts": "紧急联系人",
    "responders": "负责人员",
    "responder_id": "人员编号",
    "role": "角色",
    "channels": "通知渠道",
    "skills": "技能",
    "on_duty": "值班",
}


class CsvImportError(Exception):
    """The whole file cannot be imported (unreadable, undecodable, unknown header).

    ``str(err)`` is the bilingual message; ``message_en`` / ``message_zh`` each language alone.
    """

    def __init__(self, message_en: str, message_zh: str) -> None:
        super().__init__(f"{message_en} / {message_zh}")
        self.message_en = message_en
        self.message_zh = message_zh


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected row: physical line (1-based, header = line 1), column, reason."""

    line: int
    column: str | None
    message_en: str
    message_zh: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message_en} / 第{self.line}行：{self.message_zh}"


@dataclass(frozen=True, slots=True)
class UnknownRef:
    """A record that names an id not in the registry after the import (kept, but reported)."""

    line: int
    record_id: str
    column: str
    ref: str

    def __str__(self) -> str:
        zh_col = _COLUMN_ZH.get(self.column, self.column)
        return (
            f"line {self.line}: {self.column} {_show(self.ref)} of {self.record_id!r} "
            f"is not in the registry / "
            f"第{self.line}行：{self.record_id!r} 的{zh_col} {_show(self.ref)} 不在登记册中"
        )


@dataclass(frozen=True, slots=True)
class ParsedFile:
    """What ``parse_csv`` made of a file. ``record_lines[i]`` is the line of ``records[i]``;
    ``rows`` counts the non-empty data rows, accepted or not."""

    kind: ImportKind
    records: tuple[Record, ...]
    record_lines: tuple[int, ...]
    errors: tuple[RowError, ...]
    rows: int

    @property
    def rejected(self) -> int:
        return len({e.line for e in self.errors})


@dataclass(frozen=True, slots=True)
class ImportReport:
    kind: ImportKind
    rows: int
    inserted: int
    updated: int
    unchanged: int
    errors: tuple[RowError, ...]
    unknown_refs: tuple[UnknownRef, ...]

    @property
    def rejected(self) -> int:
        """Rows not imported (a row with several problems counts once)."""
        return len({e.line for e in self.errors})

    @property
    def ok(self) -> bool:
        return not self.errors


# -- decoding and header --------------------------------------------------------------------


def _decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CsvImportError(
            "the file is UTF-16 (Excel 'Unicode text'); save it as 'CSV UTF-8' instead",
            "文件是 UTF-16 编码（Excel“Unicode 文本”），请另存为“CSV UTF-8”",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as utf8_error:
        _refuse_broken_utf8(data, utf8_error)
        try:
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise CsvImportError(
                f"the file is neither UTF-8 nor GB18030 (bad byte at offset {exc.start})",
                f"文件既不是 UTF-8 也不是 GB18030 编码（第 {exc.start} 字节无法解码）",
            ) from None
    return text.removeprefix("\ufeff")


def _refuse_broken_utf8(data: bytes, error: UnicodeDecodeError) -> None:
    """A file that is UTF-8 except for a few bytes (rows appended by another editor) must not be
    read as GB18030: every Chinese name would silently turn into mojibake. Real GB18030 text
    decoded as UTF-8 is nearly all replacement characters; real UTF-8 text is nearly none."""
    lenient = data.decode("utf-8", errors="replace")
    invalid = lenient.count("\ufffd")
    wide = sum(1 for ch in lenient if "\u0800" <= ch <= "\uffff" and ch != "\ufffd")
    if wide > invalid:
        line = data.count(b"\n", 0, error.start) + 1
        raise CsvImportError(
            f"line {line}: the file is UTF-8 but has invalid bytes (mixed encodings?); "
            "save it again as 'CSV UTF-8'",
            f"第{line}行：文件是 UTF-8 编码但含有无效字节（混用了编码？），请重新另存为“CSV UTF-8”",
        )


def _norm_header(cell: str) -> str:
    return re.sub(r"\s+", "_", cell.replace("\ufeff", "").strip().lower())


def _expected_columns_text() -> tuple[str, str]:
    en = "; ".join(
        f"{kind.value}: {', '.join(_REQUIRED[kind])}[, {', '.join(_optional(kind))}]"
        for kind in ImportKind
    )
    zh = "；".join(f"{_KIND_ZH[kind]}：{', '.join(_REQUIRED[kind])}" for kind in ImportKind)
    return en, zh


def _optional(kind: ImportKind) -> tuple[str, ...]:
    return tuple(c for c in _COLUMNS[kind] if c not in _REQUIRED[kind])


def _detect_kind(names: Sequence[str]) -> ImportKind:
    present = set(names)
    matches = [k for k in ImportKind if set(_REQUIRED[k]) <= present]
    if ImportKind.RESIDENTS in matches and "device_id" in present:
        matches.remove(ImportKind.RESIDENTS)
    if len(matches) == 1:
        return matches[0]
    en, zh = _expected_columns_text()
    shown = ", ".join(n for n in names if n) or "(empty)"
    if matches:
        kinds = " and ".join(k.value for k in matches)
        raise CsvImportError(
            f"the header ({shown}) fits both {kinds}; keep one kind per file. Expected {en}",
            f"表头（{shown}）同时符合多种类型，请每个文件只放一种。应为 {zh}",
        )
    raise CsvImportError(
        f"unknown header ({shown}); expected {en}",
        f"无法识别的表头（{shown}）；应为 {zh}",
    )


# -- cell parsers: each returns a value or raises _CellError -----------------------------------


class _CellError(Exception):
    def __init__(self, en: str, zh: str) -> None:
        super().__init__(en)
        self.en = en
        self.zh = zh


def _show(value: str, limit: int = 40) -> str:
    if len(value) > limit:
        value = value[: limit - 1] + "…"
    return repr(value)


def parse_bool(value: str) -> bool | None:
    """1/0, true/false, yes/no, y/n, 是/否 (any case); empty → None; anything else → None too.

    Use ``value.strip() == ""`` to tell an empty cell from an unknown word.
    """
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def _check_id(column: str, value: str) -> str:
    if not DEVICE_ID_RE.fullmatch(value):
        raise _CellError(
            f"{column} {_show(value)} is not a valid id (1-64 of A-Z a-z 0-9 _ -)",
            f"{_COLUMN_ZH[column]} {_show(value)} 无效（只能是 1-64 个字母、数字、_ 或 -）",
        )
    return value


def _parse_type(value: str) -> DeviceType:
    try:
        return DeviceType(value.lower())
    except ValueError:
        raise _CellError(
            f"type {_show(value)} is not a device type ({', '.join(t.value for t in DeviceType)})",
            f"设备类型 {_show(value)} 无效",
        ) from None


def _parse_serial_addr(value: str) -> int:
    text = value.lower().replace("_", "")
    try:
        number = int(text[2:], 16) if text.startswith("0x") else int(text, 10)
    except ValueError:
        raise _CellError(
            f"serial_addr {_show(value)} is not a decimal or 0x hex number",
            f"串口地址 {_show(value)} 不是十进制或 0x 开头的十六进制数",
        ) from None
    if not 0 <= number <= _U32_MAX:
        raise _CellError(
            f"serial_addr {_show(value)} is outside 0..0xFFFFFFFF",
            f"串口地址 {_show(value)} 超出范围 0..0xFFFFFFFF",
        )
    return number


def _check_phone(column: str, value: str) -> str:
    if _EXCEL_NUMBER_RE.fullmatch(value):
        raise _CellError(
            f"{column} {_show(value)} was turned into a number by Excel; format the column as text",
            f"{_COLUMN_ZH.get(column, column)} {_show(value)} 被 Excel 转成了科学计数法，"
            "请把该列设为文本格式",
        )
    if not _PHONE_RE.fullmatch(value) or sum(c.isdigit() for c in value) < 3:
        raise _CellError(
            f"{column} {_show(value)} is not a phone number",
            f"{_COLUMN_ZH.get(column, column)} {_show(value)} 不是电话号码",
        )
    return value


def _parse_lives_alone(value: str) -> bool:
    parsed = parse_bool(value)
    if parsed is None:
        raise _CellError(
            f"lives_alone {_show(value)} is not yes/no (1/0, true/false, yes/no, y/n, 是/否)",
            f"独居 {_show(value)} 无效（应为 是/否、1/0、yes/no）",
        )
    return parsed


def _split_list(value: str) -> list[str]:
    return [part.strip() for part in _LIST_SEP_RE.split(value) if part.strip()]


def _parse_contacts(value: str) -> tuple[Contact, ...]:
    contacts: list[Contact] = []
    for entry in _split_list(value):
        parts = _CONTACT_SEP_RE.split(entry, maxsplit=1)
        name = parts[0].strip()
        phone = parts[1].strip() if len(parts) == 2 else ""
        if not name or not phone:
            raise _CellError(
                f"contacts entry {_show(entry)} is not name:phone",
                f"紧急联系人 {_show(entry)} 格式应为 姓名:电话",
            )
        contacts.append(Contact(name=name, phone=_check_phone("contacts", phone)))
    return tuple(contacts)


def _parse_responder_ids(value: str) -> tuple[str, ...]:
    ids = [_check_id("responders", part) for part in _split_list(value)]
    return tuple(dict.fromkeys(ids))


def _parse_role(value: str) -> str:
    role = value.lower()
    if role not in RESPONDER_ROLES:
        raise _CellError(
            f"role {_show(value)} is not a responder role ({', '.join(sorted(RESPONDER_ROLES))})",
            f"角色 {_show(value)} 无效",
        )
    return role


def _parse_channels(value: str) -> tuple[str, ...]:
    channels: list[str] = []
    for part in _split_list(value):
        if part.lower() == "mqtt":
            channels.append("mqtt")
        elif _CHANNEL_URL_RE.fullmatch(part):
            channels.append(part)
        else:
            raise _CellError(
                f"channel {_show(part)} is neither 'mqtt' nor a URL such as json://… dingtalk://…",
                f"通知渠道 {_show(part)} 无效（应为 mqtt 或 json://、dingtalk:// 等地址）",
            )
    return tuple(channels)


# -- rows -------------------------------------------------------------------------------------


class _Row:
    """One data row: known columns by normalised name, the rest as attributes."""

    def __init__(self, line: int, values: dict[str, str], errors: list[RowError]) -> None:
        self.line = line
        self.values = values
        self.errors = errors

    def text(self, column: str) -> str | None:
        return self.values.get(column) or None

    def field(self, column: str, parse: Callable[[str], _T]) -> _T | None:
        """The parsed cell, or None when empty or invalid (the error is recorded)."""
        raw = self.values.get(column, "")
        if not raw:
            return None
        try:
            return parse(raw)
        except _CellError as err:
            self.error(column, err.en, err.zh)
            return None

    def required(self, column: str, parse: Callable[[str], _T]) -> _T | None:
        if not self.values.get(column):
            self.error(column, f"{column} is empty", f"{_COLUMN_ZH.get(column, column)} 为空")
            return None
        return self.field(column, parse)

    def error(self, column: str | None, en: str, zh: str) -> None:
        self.errors.append(RowError(self.line, column, en, zh))


def _str(value: str) -> str:
    return value


def _device(row: _Row, attributes: tuple[tuple[str, str], ...]) -> DeviceRecord | None:
    device_id = row.required("device_id", lambda v: _check_id("device_id", v))
    dtype = row.required("type", _parse_type)
    resident_id = row.field("resident_id", lambda v: _check_id("resident_id", v))
    serial_addr = row.field("serial_addr", _parse_serial_addr)
    serial_port = row.text("serial_port")
    if (serial_port is None) != (row.text("serial_addr") is None):
        column, other = (
            ("serial_port", "serial_addr")
            if serial_port is None
            else ("serial_addr", "serial_port")
        )
        row.error(
            column,
            f"{other} is given but {column} is empty; a serial device needs both",
            f"填写了{_COLUMN_ZH[other]}但{_COLUMN_ZH[column]}为空，串口设备两者都要填",
        )
    if row.errors or device_id is None or dtype is None:
        return None
    return DeviceRecord(
        device_id=device_id,
        type=dtype,
        name=row.text("name"),
        resident_id=resident_id,
        building=row.text("building"),
        unit=row.text("unit"),
        room=row.text("room"),
        serial_port=serial_port,
        serial_addr=serial_addr,
        zigbee_name=row.text("zigbee_name"),
        sia_account=row.text("sia_account"),
        sia_zone=row.text("sia_zone"),
        attributes=attributes,
    )


def _resident(row: _Row, attributes: tuple[tuple[str, str], ...]) -> ResidentRecord | None:
    resident_id = row.required("resident_id", lambda v: _check_id("resident_id", v))
    name = row.required("name", _str)
    phone = row.field("phone", lambda v: _check_phone("phone", v))
    lives_alone = row.field("lives_alone", _parse_lives_alone)
    contacts = row.field("contacts", _parse_contacts)
    responders = row.field("responders", _parse_responder_ids)
    if row.errors or resident_id is None or name is None:
        return None
    return ResidentRecord(
        resident_id=resident_id,
        name=name,
        phone=phone,
        building=row.text("building"),
        unit=row.text("unit"),
        room=row.text("room"),
        grid=row.text("grid"),
        lives_alone=bool(lives_alone),
        medical_notes=row.text("medical_notes"),
        contacts=contacts or (),
        responders=responders or (),
        attributes=attributes,
    )


def _responder(row: _Row, attributes: tuple[tuple[str, str], ...]) -> ResponderRecord | None:
    responder_id = row.required("responder_id", lambda v: _check_id("responder_id", v))
    name = row.required("name", _str)
    role = row.required("role", _parse_role)
    phone = row.field("phone", lambda v: _check_phone("phone", v))
    channels = row.field("channels", _parse_channels)
    skills = row.field("skills", lambda v: tuple(_split_list(v)))
    if row.errors or responder_id is None or name is None or role is None:
        return None
    return ResponderRecord(
        responder_id=responder_id,
        name=name,
        role=role,
        phone=phone,
        building=row.text("building"),
        grid=row.text("grid"),
        channels=channels or (),
        skills=skills or (),
        on_duty=row.text("on_duty"),
        attributes=attributes,
    )


_BUILDERS: Final[dict[ImportKind, Callable[[_Row, tuple[tuple[str, str], ...]], Record | None]]] = {
    ImportKind.DEVICES: _device,
    ImportKind.RESIDENTS: _resident,
    ImportKind.RESPONDERS: _responder,
}


# -- the file ---------------------------------------------------------------------------------


def _rows(text: str) -> list[tuple[int, list[str]]]:
    """Non-empty CSV records with the physical line each starts on; cells trimmed."""
    reader = csv.reader(io.StringIO(text, newline=""))
    out: list[tuple[int, list[str]]] = []
    last_line = 0
    try:
        for cells in reader:
            start = last_line + 1
            last_line = reader.line_num
            trimmed = [cell.strip() for cell in cells]
            if any(trimmed):
                out.append((start, trimmed))
    except csv.Error as exc:
        line = last_line + 1
        raise CsvImportError(
            f"line {line}: the file is not valid CSV ({exc})",
            f"第{line}行：不是有效的 CSV 格式（{exc}）",
        ) from None
    return out


def parse_csv(data: bytes) -> ParsedFile:
    """Decode, detect the kind by the header and validate every row.

    Raises ``CsvImportError`` only for problems with the whole file (encoding, CSV syntax, an
    unknown or duplicated header); row problems are returned in ``ParsedFile.errors``.
    """
    rows = _rows(_decode(data))
    if not rows:
        raise CsvImportError("the file is empty", "文件为空")
    header_line, header = rows[0]
    names = [_norm_header(cell) for cell in header]
    kind = _detect_kind(names)
    known = set(_COLUMNS[kind])
    seen_names: set[str] = set()
    for name in names:
        if name and name in seen_names:
            raise CsvImportError(
                f"line {header_line}: column {name!r} appears twice in the header",
                f"第{header_line}行：表头中 {name!r} 列重复",
            )
        seen_names.add(name)
    # Extra columns keep their header text as written (trimmed); unnamed ones get a position.
    extra_keys = {
        i: (cell.replace("\ufeff", "") or f"column_{i + 1}")
        for i, (cell, name) in enumerate(zip(header, names, strict=True))
        if name not in known
    }

    id_column = _ID_COLUMN[kind]
    builder = _BUILDERS[kind]
    first_line_of: dict[str, int] = {}
    serial_seen: dict[tuple[str, int], int] = {}
    zigbee_seen: dict[str, int] = {}
    records: list[Record] = []
    record_lines: list[int] = []
    errors: list[RowError] = []

    for line, cells in rows[1:]:
        values = {name: cells[i] if i < len(cells) else "" for i, name in enumerate(names)}
        row_errors: list[RowError] = []
        row = _Row(line, {k: v for k, v in values.items() if k in known}, row_errors)
        if len(cells) > len(names) and any(cells[len(names) :]):
            row.error(
                None,
                f"{len(cells)} cells but the header has {len(names)} columns",
                f"有 {len(cells)} 个单元格，但表头只有 {len(names)} 列",
            )
        attributes = tuple(
            (key, cells[i]) for i, key in extra_keys.items() if i < len(cells) and cells[i]
        )
        record_id = row.values.get(id_column, "")
        if record_id and record_id in first_line_of:
            first = first_line_of[record_id]
            row.error(
                id_column,
                f"{id_column} {_show(record_id)} already appears on line {first}",
                f"{_COLUMN_ZH[id_column]} {_show(record_id)} 与第{first}行重复",
            )
        elif record_id:
            first_line_of[record_id] = line
        record = builder(row, attributes)
        if isinstance(record, DeviceRecord):
            _check_device_uniqueness(record, row, serial_seen, zigbee_seen)
        if record is not None and not row_errors:
            records.append(record)
            record_lines.append(line)
        errors.extend(row_errors)

    return ParsedFile(
        kind=kind,
        records=tuple(records),
        record_lines=tuple(record_lines),
        errors=tuple(errors),
        rows=len(rows) - 1,
    )


def _check_device_uniqueness(
    record: DeviceRecord,
    row: _Row,
    serial_seen: dict[tuple[str, int], int],
    zigbee_seen: dict[str, int],
) -> None:
    """Two devices on one bus address (or one Zigbee name) would make their events ambiguous."""
    if record.serial_port is not None and record.serial_addr is not None:
        key = (record.serial_port, record.serial_addr)
        if key in serial_seen:
            where = f"{record.serial_port} 0x{record.serial_addr:04X}"
            row.error(
                "serial_addr",
                f"serial address {where} is already used on line {serial_seen[key]}",
                f"串口地址 {where} 已被第{serial_seen[key]}行使用",
            )
        else:
            serial_seen[key] = row.line
    if record.zigbee_name is not None:
        if record.zigbee_name in zigbee_seen:
            first = zigbee_seen[record.zigbee_name]
            row.error(
                "zigbee_name",
                f"zigbee_name {_show(record.zigbee_name)} is already used on line {first}",
                f"Zigbee 名称 {_show(record.zigbee_name)} 已被第{first}行使用",
            )
        else:
            zigbee_seen[record.zigbee_name] = row.line


# -- import -----------------------------------------------------------------------------------


async def import_csv(store: RegistryWriter, path: Path) -> ImportReport:
    """Read ``path``, parse it, upsert the valid rows and report unknown references.

    Raises ``CsvImportError`` when the file cannot be read or parsed as a whole; database
    failures surface as the store's ``StoreError``.
    """
    try:
        data = await asyncio.to_thread(path.read_bytes)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CsvImportError(
            f"cannot read {path}: {reason}", f"无法读取文件 {path}：{reason}"
        ) from None
    return await import_data(store, data)


async def import_data(store: RegistryWriter, data: bytes) -> ImportReport:
    """``import_csv`` for bytes already in memory (e.g. an upload)."""
    parsed = parse_csv(data)
    result = await _upsert(store, parsed)
    unknown = await _unknown_refs(store, parsed)
    return ImportReport(
        kind=parsed.kind,
        rows=parsed.rows,
        inserted=result.inserted,
        updated=result.updated,
        unchanged=result.unchanged,
        errors=parsed.errors,
        unknown_refs=unknown,
    )


async def _upsert(store: RegistryWriter, parsed: ParsedFile) -> UpsertResult:
    if not parsed.records:
        return UpsertResult(inserted=0, updated=0, unchanged=0)
    if parsed.kind is ImportKind.DEVICES:
        return await store.upsert_devices(
            [r for r in parsed.records if isinstance(r, DeviceRecord)]
        )
    if parsed.kind is ImportKind.RESIDENTS:
        return await store.upsert_residents(
            [r for r in parsed.records if isinstance(r, ResidentRecord)]
        )
    return await store.upsert_responders(
        [r for r in parsed.records if isinstance(r, ResponderRecord)]
    )


async def _unknown_refs(store: RegistryWriter, parsed: ParsedFile) -> tuple[UnknownRef, ...]:
    # (line, record id, column, referenced id)
    refs: list[tuple[int, str, str, str]] = []
    table = ""
    for line, record in zip(parsed.record_lines, parsed.records, strict=True):
        if isinstance(record, DeviceRecord) and record.resident_id is not None:
            table = "residents"
            refs.append((line, record.device_id, "resident_id", record.resident_id))
        elif isinstance(record, ResidentRecord):
            table = "responders"
            refs.extend((line, record.resident_id, "responders", rid) for rid in record.responders)
    if not refs:
        return ()
    wanted = list(dict.fromkeys(ref for *_, ref in refs))
    existing = await store.existing_ids(table, wanted)
    return tuple(
        UnknownRef(line=line, record_id=rid, column=col, ref=ref)
        for line, rid, col, ref in refs
        if ref not in existing
    )


# -- report -----------------------------------------------------------------------------------


def format_report(report: ImportReport) -> str:
    """Human text for the terminal: the summary in English and Chinese, then every rejected
    row and every unknown reference with its line number."""
    kind_zh = _KIND_ZH[report.kind]
    lines = [
        f"{report.kind.value}: {report.rows} rows, {report.inserted} new, "
        f"{report.updated} updated, {report.unchanged} unchanged, {report.rejected} rejected",
        f"{kind_zh}：共 {report.rows} 行，新增 {report.inserted}，更新 {report.updated}，"
        f"未变 {report.unchanged}，拒绝 {report.rejected}",
    ]
    if report.errors:
        lines.append("rejected rows (not imported) / 被拒绝的行（未导入）:")
        lines.extend(f"  {err}" for err in report.errors)
    if report.unknown_refs:
        lines.append("unknown references (imported anyway) / 未知引用（已导入）:")
        lines.extend(f"  {ref}" for ref in report.unknown_refs)
    return "\n".join(lines)
