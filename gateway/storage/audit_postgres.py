"""The audit log (:class:`gateway.audit.AuditStore`) on PostgreSQL, mixed into
``PostgresStore``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg.rows import TupleRow

from gateway.audit import AuditEntry, AuditQuery
from gateway.storage import _audit as q
from gateway.storage._util import qmark_to_pyformat as pg
from gateway.storage._util import require_aware

Conn = psycopg.AsyncConnection[TupleRow]

_INSERT: Final = pg(q.INSERT_SQL)


def _ps(values: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(require_aware(v) if isinstance(v, datetime) else v for v in values)


class PostgresAudit:
    """AuditStore methods; the host class provides the connection pool."""

    if TYPE_CHECKING:

        def _connection(self) -> AbstractAsyncContextManager[Conn]: ...

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        rows = [_ps(q.insert_row(e)) for e in entries]
        if not rows:
            return
        async with self._connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.executemany(_INSERT, rows)

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        sql, params = q.select_sql(query)
        async with self._connection() as conn:
            cur = await conn.execute(pg(sql), _ps(params))
            rows = await cur.fetchall()
        return [q.entry_from_row(r) for r in rows]
