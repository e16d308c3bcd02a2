"""The audit log store contract (gateway/audit.py): every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import cast

from gateway.audit import AuditAction, AuditEntry, Auditor, AuditQuery, AuditStore
from gateway.storage.base import Store
from tests.storage.conftest import CST, T0

S = timedelta(seconds=1)


def _entry(i: int, **kw: object) -> AuditEntry:
    base: dict[str, object] = {
        "at": T0 + i * S,
        "actor": "duty-user",
        "role": "duty",
        "action": AuditAction.ALERT_ACK.value,
        "target_kind": "alert",
        "target_id": f"a{i}",
        "detail": json.dumps({"i": i, "名字": "张秀英"}, ensure_ascii=False),
        "client_ip": "10.0.0.7",
    }
    base.update(kw)
    return AuditEntry(**base)  # type: ignore[arg-type]


async def test_entries_round_trip_newest_first(store: Store) -> None:
    audit = cast(AuditStore, store)
    await audit.record_audit([_entry(i) for i in range(3)])
    got = await audit.audit_entries(AuditQuery())
    assert [e.target_id for e in got] == ["a2", "a1", "a0"]
    first = got[-1]
    assert first.at == T0
    assert first.at.tzinfo is not None
    assert (first.actor, first.role, first.action) == ("duty-user", "duty", "alert.ack")
    assert json.loads(first.detail) == {"i": 0, "名字": "张秀英"}
    assert first.client_ip == "10.0.0.7"
    assert first.id is not None
    assert len({e.id for e in got}) == 3


async def test_equal_instants_keep_their_order_and_pages_do_not_overlap(store: Store) -> None:
    audit = cast(AuditStore, store)
    for i in range(5):  # one call each: ids grow in write order
        await audit.record_audit([_entry(0, target_id=f"same{i}")])
    page1 = await audit.audit_entries(AuditQuery(limit=2))
    page2 = await audit.audit_entries(AuditQuery(limit=2, offset=2))
    page3 = await audit.audit_entries(AuditQuery(limit=2, offset=4))
    ids = [e.target_id for e in page1 + page2 + page3]
    assert ids == ["same4", "same3", "same2", "same1", "same0"]


async def test_filters_combine(store: Store) -> None:
    audit = cast(AuditStore, store)
    await audit.record_audit(
        [
            _entry(0),
            _entry(1, actor="admin-user", role="admin", action="user.create", target_kind="user"),
            _entry(2, action="resident.read", target_kind="resident", target_id="r1"),
            _entry(3, action="resident.read", target_kind="resident", target_id="r2"),
            _entry(4, action="resident.read", target_kind="resident", target_id="r1"),
        ]
    )

    async def ids(**kw: object) -> list[str | None]:
        return [e.target_id for e in await audit.audit_entries(AuditQuery(**kw))]  # type: ignore[arg-type]

    assert await ids(actor="admin-user") == ["a1"]
    assert await ids(action="resident.read", target_id="r1") == ["r1", "r1"]
    assert await ids(target_kind="resident", since=T0 + 3 * S) == ["r1", "r2"]
    assert await ids(target_kind="resident", until=T0 + 3 * S) == ["r1"]
    # An aware instant in another zone means the same moment.
    assert await ids(since=(T0 + 4 * S).astimezone(CST)) == ["r1"]
    assert await ids(actor="nobody") == []


async def test_nothing_recorded_is_a_no_op_and_odd_text_is_kept(store: Store) -> None:
    audit = cast(AuditStore, store)
    await audit.record_audit([])
    await audit.record_audit(
        [_entry(0, target_id=None, client_ip=None, detail="not json", actor="名字'; --")]
    )
    (got,) = await audit.audit_entries(AuditQuery())
    assert got.target_id is None
    assert got.client_ip is None
    assert json.loads(got.detail) == "not json"  # stored as a JSON string, not refused
    assert got.actor == "名字'; --"


async def test_auditor_writes_through_the_store(store: Store) -> None:
    auditor = Auditor(cast(AuditStore, store), clock=lambda: T0)
    entry = await auditor.record(
        actor="duty-user",
        role="duty",
        action=AuditAction.RESIDENT_READ,
        target_kind="resident",
        target_id="r1",
        client_ip="127.0.0.1",
        detail={"contacts": True, "via": "alert"},
    )
    (got,) = await cast(AuditStore, store).audit_entries(AuditQuery())
    assert got.at == T0
    assert json.loads(got.detail) == {"contacts": True, "via": "alert"}
    assert got.detail == entry.detail
