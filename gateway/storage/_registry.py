"""Registry upserts, backend-neutral: record → column values, and the insert/update plan.

Both backends read the current rows, hand them here and execute the plan, so "re-importing
the same file changes nothing" is decided by one piece of code, not two SQL dialects.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devices.models import DeviceType
from devices.records import Contact, DeviceRecord, ResidentRecord, ResponderRecord
from gateway.storage._util import dump_json

REGISTRY_KEYS: Mapping[str, str] = {
    "devices": "device_id",
    "residents": "resident_id",
    "responders": "responder_id",
}

# The resident's ordered responder list lives in its own table; it still takes part in the
# "did this record change" comparison under this pseudo-column name.
RESPONDERS = "responders"


@dataclass(frozen=True, slots=True)
class TableSpec:
    table: str
    key: str
    columns: tuple[str, ...]  # stored content columns, without key and timestamps
    json_columns: frozenset[str] = frozenset()
    bool_columns: frozenset[str] = frozenset()
    extra: tuple[str, ...] = ()  # compared but stored elsewhere (resident_responders)

    @property
    def compared(self) -> tuple[str, ...]:
        return self.columns + self.extra


DEVICES = TableSpec(
    table="devices",
    key="device_id",
    columns=(
        "type",
        "name",
        "resident_id",
        "building",
        "unit",
        "room",
        "serial_port",
        "serial_addr",
        "zigbee_name",
        "sia_account",
        "sia_zone",
        "attributes",
    ),
    json_columns=frozenset({"attributes"}),
)

RESIDENTS = TableSpec(
    table="residents",
    key="resident_id",
    columns=(
        "name",
        "phone",
        "building",
        "unit",
        "room",
        "grid",
        "lives_alone",
        "medical_notes",
        "contacts",
        "attributes",
    ),
    json_columns=frozenset({"contacts", "attributes"}),
    bool_columns=frozenset({"lives_alone"}),
    extra=(RESPONDERS,),
)

RESPONDERS_SPEC = TableSpec(
    table="responders",
    key="responder_id",
    columns=(
        "name",
        "role",
        "phone",
        "building",
        "grid",
        "channels",
        "skills",
        "on_duty",
        "attributes",
    ),
    json_columns=frozenset({"channels", "skills", "attributes"}),
)

Values = tuple[Any, ...]  # compared content in spec.compared order; JSON as Python objects


def device_values(r: DeviceRecord) -> tuple[str, Values]:
    return r.device_id, (
        str(r.type),
        r.name,
        r.resident_id,
        r.building,
        r.unit,
        r.room,
        r.serial_port,
        r.serial_addr,
        r.zigbee_name,
        r.sia_account,
        r.sia_zone,
        dict(r.attributes),
    )


def resident_values(r: ResidentRecord) -> tuple[str, Values]:
    contacts = [{"name": c.name, "phone": c.phone} for c in r.contacts]
    return r.resident_id, (
        r.name,
        r.phone,
        r.building,
        r.unit,
        r.room,
        r.grid,
        r.lives_alone,
        r.medical_notes,
        contacts,
        dict(r.attributes),
        # Ordered and without repeats, exactly as resident_responders can hold it.
        list(dict.fromkeys(r.responders)),
    )


def responder_values(r: ResponderRecord) -> tuple[str, Values]:
    return r.responder_id, (
        r.name,
        r.role,
        r.phone,
        r.building,
        r.grid,
        list(r.channels),
        list(r.skills),
        r.on_duty,
        dict(r.attributes),
    )


def normalize_row(spec: TableSpec, row: Sequence[Any]) -> Values:
    """A stored row (content columns in spec order) as comparable Python values."""
    out: list[Any] = []
    for col, value in zip(spec.columns, row, strict=True):
        if value is not None and col in spec.json_columns:
            value = json.loads(value) if isinstance(value, str | bytes) else value
        elif value is not None and col in spec.bool_columns:
            value = bool(value)
        out.append(value)
    return tuple(out)


def storable(spec: TableSpec, values: Values) -> list[Any]:
    """Content column values as parameters (JSON columns as JSON text)."""
    return [
        dump_json(v) if col in spec.json_columns else v
        for col, v in zip(spec.columns, values[: len(spec.columns)], strict=True)
    ]


@dataclass(slots=True)
class UpsertPlan:
    inserts: list[tuple[str, Values]] = field(default_factory=list)
    updates: list[tuple[str, Values]] = field(default_factory=list)
    unchanged: int = 0


def plan_upsert(rows: Iterable[tuple[str, Values]], current: Mapping[str, Values]) -> UpsertPlan:
    """Decide per row: insert (new id), update (content differs) or unchanged.

    Rows are taken in order, so an id repeated within one call is compared against the earlier
    row of the same call. Execute inserts first, then updates in list order: last one wins.
    """
    plan = UpsertPlan()
    state = dict(current)
    for key, values in rows:
        old = state.get(key)
        if old is None:
            plan.inserts.append((key, values))
        elif old == values:
            plan.unchanged += 1
        else:
            plan.updates.append((key, values))
        state[key] = values
    return plan


def insert_sql(spec: TableSpec, ph: Callable[[str], str]) -> str:
    """``INSERT`` of key, content columns, created_at, updated_at; ``ph(col)`` spells a
    placeholder (PostgreSQL casts JSON columns)."""
    cols = (spec.key, *spec.columns, "created_at", "updated_at")
    marks = ", ".join(ph(c) for c in cols)
    return f"INSERT INTO {spec.table} ({', '.join(cols)}) VALUES ({marks})"


def update_sql(spec: TableSpec, ph: Callable[[str], str]) -> str:
    """``UPDATE`` of content columns and updated_at, key last."""
    sets = ", ".join(f"{c} = {ph(c)}" for c in (*spec.columns, "updated_at"))
    return f"UPDATE {spec.table} SET {sets} WHERE {spec.key} = {ph(spec.key)}"


def _attrs(value: Any) -> tuple[tuple[str, str], ...]:
    return tuple((str(k), str(v)) for k, v in (value or {}).items())


def device_record(key: str, v: Values) -> DeviceRecord:
    """The inverse of ``device_values`` (for reading the registry back)."""
    return DeviceRecord(
        device_id=key,
        type=DeviceType(v[0]),
        name=v[1],
        resident_id=v[2],
        building=v[3],
        unit=v[4],
        room=v[5],
        serial_port=v[6],
        serial_addr=v[7],
        zigbee_name=v[8],
        sia_account=v[9],
        sia_zone=v[10],
        attributes=_attrs(v[11]),
    )


def resident_record(key: str, v: Values) -> ResidentRecord:
    return ResidentRecord(
        resident_id=key,
        name=v[0],
        phone=v[1],
        building=v[2],
        unit=v[3],
        room=v[4],
        grid=v[5],
        lives_alone=bool(v[6]),
        medical_notes=v[7],
        contacts=tuple(Contact(c["name"], c["phone"]) for c in (v[8] or [])),
        attributes=_attrs(v[9]),
        responders=tuple(v[10]) if len(v) > 10 else (),
    )


def responder_record(key: str, v: Values) -> ResponderRecord:
    return ResponderRecord(
        responder_id=key,
        name=v[0],
        role=v[1],
        phone=v[2],
        building=v[3],
        grid=v[4],
        channels=tuple(v[5] or ()),
        skills=tuple(v[6] or ()),
        on_duty=v[7],
        attributes=_attrs(v[8]),
    )
