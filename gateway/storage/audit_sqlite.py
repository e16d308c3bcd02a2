"""The audit log (:class:`gateway.audit.AuditStore`) on SQLite, mixed into ``SqliteStore``."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit import AuditEntry, AuditQuery
from gateway.storage import _audit as q
from gateway.storage._util import utc_text

T = TypeVar("T")


def _p(value: Any) -> Any:
    return utc_text(value) if isinstance(value, datetime) else value


class SqliteAudit:
    """AuditStore methods; the host class provides the worker thread and transactions."""

    if TYPE_CHECKING:

        async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        @staticmethod
        def _tx(conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Cursor]: ...

    async def record_audit(self, entries: Sequence[AuditEntry]) -> None:
        rows = [tuple(_p(v) for v in q.insert_row(e)) for e in entries]
        if not rows:
            return

        def write(conn: sqlite3.Connection) -> None:
            with self._tx(conn) as cur:
                cur.executemany(q.INSERT_SQL, rows)

        await self._run(write)

    async def audit_entries(self, query: AuditQuery) -> list[AuditEntry]:
        sql, params = q.select_sql(query)
        args = [_p(v) for v in params]

        def read(conn: sqlite3.Connection) -> list[AuditEntry]:
            return [q.entry_from_row(r) for r in conn.execute(sql, args).fetchall()]

        return await self._run(read)
