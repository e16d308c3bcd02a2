"""Backend-neutral SQL of the audit log (``?`` placeholders; PostgreSQL translates them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from gateway.audit import AuditEntry, AuditQuery
from gateway.storage._alerts import as_instant
from gateway.storage._util import as_json_text

COLUMNS: Final = "at, actor, role, action, target_kind, target_id, detail, client_ip"

INSERT_SQL: Final = f"INSERT INTO audit_log ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


def insert_row(entry: AuditEntry) -> tuple[Any, ...]:
    return (
        entry.at,
        entry.actor,
        entry.role,
        entry.action,
        entry.target_kind,
        entry.target_id,
        as_json_text(entry.detail),
        entry.client_ip,
    )


def select_sql(query: AuditQuery) -> tuple[str, list[Any]]:
    """Newest first; ``id`` breaks ties of equal instants (it only grows)."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("actor", query.actor),
        ("action", query.action),
        ("target_kind", query.target_kind),
        ("target_id", query.target_id),
    ):
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    if query.since is not None:
        where.append("at >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("at < ?")
        params.append(query.until)
    sql = f"SELECT id, {COLUMNS} FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY at DESC, id DESC LIMIT ? OFFSET ?"
    params += [query.limit, query.offset]
    return sql, params


def entry_from_row(row: Sequence[Any]) -> AuditEntry:
    id_, at, actor, role, action, target_kind, target_id, detail, client_ip = row
    instant = as_instant(at)
    assert instant is not None  # NOT NULL column
    return AuditEntry(
        at=instant,
        actor=str(actor),
        role=str(role),
        action=str(action),
        target_kind=str(target_kind),
        target_id=None if target_id is None else str(target_id),
        detail=str(detail),
        client_ip=None if client_ip is None else str(client_ip),
        id=int(id_),
    )
